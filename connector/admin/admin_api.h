// The admin server's routes, for IT staff and their monitoring:
//   GET  /                        the status page (self-contained HTML; it calls the API below)
//   GET  /healthz                 200 while the process runs
//   GET  /readyz                  200 when the store is writable, the EHR was reached recently and
//                                 no certificate has expired; 503 otherwise, naming the failed check
//   GET  /metrics                 Prometheus text format
//   GET  /api/status              queue depths, delivery rate, EHR, certificates, open alerts
//   GET  /api/records?state=S     records in a state (default dead), oldest first; &limit=N
//   GET  /api/records/ID          every revision of one record, and its events
//   GET  /api/events?limit=N      the newest sync log events (&record=ID for one record)
//   GET  /api/quarantine?limit=N  rejected records with their problems
//   GET  /api/series?width=S      the last 24 h in bins of S seconds (default 3600): deliveries,
//                                 retries, dead letters, p50/p95 from arrival to delivery (kept in
//                                 memory since the daemon started; answered without the store)
//   POST /api/records/ID/replay   {"reason": "..."}: its dead letter back in its lane
// With admin.token_file, everything but /, /healthz and /readyz needs "Authorization: Bearer".
// On loopback, a request whose Host is not a loopback name or address is refused (403): a web page
// whose domain an attacker points at 127.0.0.1 (DNS rebinding) cannot use the admin server.
// POSTs need Content-Type: application/json, which a cross-site form cannot send without a CORS
// preflight this server never grants. Answers never contain a record's body or patient data.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "connector/config/config.h"
#include "connector/net/http_server.h"
#include "connector/observe/metrics.h"
#include "connector/observe/sync_log.h"
#include "connector/auth/access_tokens.h"
#include "connector/sync/ehr_capabilities.h"
#include "connector/outbox/outbox.h"
#include "connector/outbox/store_worker.h"

namespace connector {

// The delivery side's own state, which the store cannot tell (read from any thread).
struct delivery_health {
  bool store_degraded = false;  // delivery waits for the store to take writes again
  std::string store_problem;
  // ehr.auth's token as the event loop last published it (never the token itself); absent
  // without ehr.auth. published_steady_ms ages expires_in_ms to the moment it is read.
  std::optional<token_status> auth;
  std::int64_t auth_published_steady_ms = 0;
  // The write strategy chosen from the EHR's CapabilityStatement, once it was read; what went
  // wrong reading it (empty after a success) and when it was last read (wall clock).
  std::optional<write_strategy> write;
  std::string write_software;
  std::string capabilities_error;
  std::int64_t capabilities_read_at_ms = 0;
};

// Routes that read the store run on `reader` (a worker with its own connection, so a slow scan or
// a busy store never holds up /healthz); replays, which write, on `writer`.
struct admin_context {
  store_worker& reader;
  store_worker& writer;
  std::function<delivery_health()> delivery;
  metrics& counters;
  event_sink& events;    // replays are events too
  const connector_config& config;
  clock_ms now;
  std::string version;
  std::int64_t started_at_ms = 0;
  std::optional<std::string> token;
  std::string ingest_api_address;  // host:port as bound (the configured port may be 0); empty: off
  const sync_log* log = nullptr;   // for its failed-write count in /metrics
  std::function<std::vector<listener_figures>()> listeners;  // connection slots, for /metrics
  std::int64_t owner = 0;  // this process among the store's owners (marked in status and /metrics)
};

struct readiness {
  bool store_writable = false;
  bool ehr_reached_recently = false;
  bool certificates_valid = false;
  std::string detail;  // the first failed check, for people
  bool ready() const { return store_writable && ehr_reached_recently && certificates_valid; }
};

// How long a successful contact with the EHR counts as "recent" for /readyz. The daemon probes
// the EHR (GET metadata) when idle, well within this.
inline constexpr std::int64_t ehr_recent_ms = 5 * 60 * 1000;

readiness check_readiness(outbox& store, const outbox_status& status,
                          const std::vector<certificate_days>& certificates, std::int64_t now_ms,
                          const delivery_health& delivery = {});

class admin_api {
 public:
  explicit admin_api(admin_context context) : c_(std::move(context)) {}
  void handle(const http_request& request, http_respond respond);
  // Before the body is read: the Host check and the token (see server_settings).
  std::optional<http_response> screen(const http_request& head) const;
  // A rotated token (SIGHUP), on the io thread that screens requests.
  void set_token(std::string token) { c_.token = std::move(token); }

 private:
  // On the reader's thread.
  http_response read_route(outbox& store, const http_request& request);
  http_response status(outbox& store);
  http_response records(outbox& store, const std::string& query);
  http_response record(outbox& store, const std::string& record_id);
  http_response events(const std::string& query);
  http_response quarantine(outbox& store, const std::string& query);
  // On the io thread: memory only.
  http_response series(const std::string& query) const;
  http_response metrics_text(outbox& store);
  http_response ready(outbox& store);
  // On the writer's thread.
  http_response replay(outbox& store, const std::string& record_id, const std::string& reason, const std::string& who);

  admin_context c_;
};

// The status page, embedded at build time from connector/admin/status_page.html.
extern const char* const status_page_html;

}  // namespace connector
