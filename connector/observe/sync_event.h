// One state change of a record (or of the connector), as IT staff see it in the sync log, the
// metrics and the status page. Carries identifiers, counts and reasons only: the patient appears
// solely as the keyed hash that names their lane, never by name, MRN or birth date.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace connector {

// The events, by name as written to the log.
namespace event {
inline constexpr std::string_view received = "received";          // stored durably by intake
inline constexpr std::string_view rejected = "rejected";          // refused by intake, quarantined
inline constexpr std::string_view flagged = "flagged";            // mapped with clinical flags
inline constexpr std::string_view held = "held";                  // a follow-up waits for its procedure
inline constexpr std::string_view sent = "sent";                  // a transaction went to the EHR
inline constexpr std::string_view delivered = "delivered";        // the EHR accepted it
inline constexpr std::string_view retry_scheduled = "retry_scheduled";
inline constexpr std::string_view dead_lettered = "dead_lettered";
inline constexpr std::string_view replayed = "replayed";          // a dead letter back in its lane
inline constexpr std::string_view auth_fault = "auth_fault";      // 401/403: delivery paused
inline constexpr std::string_view write_refused = "write_refused";  // 405/501/not-supported: paused
inline constexpr std::string_view write_strategy = "write_strategy";  // chosen from /metadata, when it changes
inline constexpr std::string_view tls_fault = "tls_fault";        // the TLS handshake failed
inline constexpr std::string_view claim_recovered = "claim_recovered";  // taken back from a dead or stalled process
inline constexpr std::string_view claim_lost = "claim_lost";      // this process's claim was taken over first
inline constexpr std::string_view store_busy = "store_busy";      // a write found the store locked past the timeout
inline constexpr std::string_view store_degraded = "store_degraded";  // delivery waits for the store
inline constexpr std::string_view store_restored = "store_restored";  // ... and goes on
inline constexpr std::string_view alert_opened = "alert_opened";
inline constexpr std::string_view alert_closed = "alert_closed";
}  // namespace event

struct sync_event {
  std::int64_t time_ms = 0;
  std::string_view name;       // one of event::
  std::string record_id;
  std::string record_type;
  int revision = 0;            // 0: not known or not applicable
  int attempt = 0;
  int http_status = 0;
  std::optional<std::int64_t> latency_ms;
  // delivered: when the revision was stored (its arrival), if the sender knows it; the status
  // page's latency chart measures arrival to delivery with it.
  std::optional<std::int64_t> received_at_ms;
  std::string correlation_id;  // also sent to the EHR as X-Request-ID
  std::string ehr_error;       // the EHR's error summary, quoted values removed
  std::string patient;         // keyed hash of the MRN
  std::string channel;         // intake: cli, inbox, api
  std::string detail;          // the reason, a flag list, an alert's text: never patient data
};

// Where events go: the sync log always, the daemon's metrics too.
class event_sink {
 public:
  virtual ~event_sink() = default;
  virtual void emit(const sync_event& e) = 0;
};

}  // namespace connector
