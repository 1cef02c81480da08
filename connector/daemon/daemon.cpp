// `run`: the daemon. Its main thread takes inbox files, delivers (the sync engine) and watches
// for alerts; a second thread serves the ingest API and the admin server. Each thread has its
// own connection to the outbox: SQLite in WAL mode lets one write while the other reads, and
// short write transactions take turns.
#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <memory>
#include <optional>
#include <thread>

#include "connector/admin/admin_api.h"
#include "connector/config/certificate_files.h"
#include "connector/cli/commands.h"
#include "connector/config/config.h"
#include "connector/daemon/delivery_setup.h"
#include "connector/net/http_server.h"
#include "connector/intake/inbox.h"
#include "connector/intake/ingest_api.h"
#include "connector/intake/intake.h"
#include "connector/observe/alerts.h"
#include "connector/observe/metrics.h"
#include "connector/observe/sync_log.h"
#include "connector/observe/webhook.h"
#include "connector/config/patient_key.h"

#ifndef MIGRAINE_CONNECTOR_VERSION
#define MIGRAINE_CONNECTOR_VERSION "unknown"
#endif

namespace connector {
namespace {

std::atomic<bool> stop_requested{false};
extern "C" void request_stop(int) { stop_requested = true; }

constexpr std::int64_t idle_ms = 200;              // how soon new or due records are noticed
constexpr std::int64_t alert_check_ms = 5000;      // how often alert conditions are evaluated
constexpr std::int64_t probe_after_idle_ms = 60000;  // an idle daemon checks the EHR this often

// The daemon's events go to the sync log and to the metrics.
class daemon_events : public event_sink {
 public:
  daemon_events(sync_log& log, metrics& counters) : log_(log), counters_(counters) {}
  void emit(const sync_event& e) override {
    log_.emit(e);
    counters_.emit(e);
  }

 private:
  sync_log& log_;
  metrics& counters_;
};

std::string url_of(const listen_address& a, bool tls) {
  const bool v6 = a.host.find(':') != std::string::npos;
  return std::string(tls ? "https://" : "http://") + (v6 ? "[" + a.host + "]" : a.host);
}

// The servers' thread: the ingest API and the admin server, with their own outbox connection.
// Built (and bound) on the main thread, so a port in use stops the daemon before it starts.
class front_door {
 public:
  front_door(const connector_config& config, const sync_log& log, event_sink& events, metrics& counters,
             const mappings::code_tables& tables, const patient_key& patients, std::int64_t started_at_ms)
      : store_(config.store.path, config.store.full_sync), records_(store_, tables, patients, events, now_ms) {
    if (const auto& api = config.ingest_api; api.listen) {
      std::optional<std::string> token;
      if (api.token_file) token = read_secret_file("ingest_api.token_file", *api.token_file);
      ingest_.emplace(records_, token);
      ingest_server_ = std::make_unique<http_server>(
          io_, server_settings{"ingest_api", *api.listen, api.cert_file, api.key_file, api.client_ca_file,
                               api.max_body_bytes, std::chrono::seconds(30),
                               [this](const http_request& head) { return ingest_->screen(head); }},
          [this](const http_request& r) { return ingest_->handle(r); });
      std::fprintf(stderr, "migraine-connector: ingest API on %s:%u/v1/records (%s)\n",
                   url_of(*api.listen, api.cert_file.has_value()).c_str(), ingest_server_->port(),
                   api.client_ca_file ? (token ? "client certificate and token" : "client certificate") : "token");
    }
    if (const auto& admin = config.admin; admin.listen) {
      std::optional<std::string> token;
      if (admin.token_file) token = read_secret_file("admin.token_file", *admin.token_file);
      std::string ingest_address;
      if (ingest_server_) ingest_address = config.ingest_api.listen->host + ":" + std::to_string(ingest_server_->port());
      admin_.emplace(admin_context{store_, counters, events, config, now_ms, MIGRAINE_CONNECTOR_VERSION,
                                   started_at_ms, token, ingest_address, &log});
      admin_server_ = std::make_unique<http_server>(
          io_, server_settings{"admin", *admin.listen, admin.cert_file, admin.key_file, std::nullopt, 64 * 1024,
                               std::chrono::seconds(30), [this](const http_request& head) { return admin_->screen(head); }},
          [this](const http_request& r) { return admin_->handle(r); });
      std::fprintf(stderr, "migraine-connector: status page and admin API on %s:%u/\n",
                   url_of(*admin.listen, admin.cert_file.has_value()).c_str(), admin_server_->port());
    }
    thread_ = std::thread([this] {
      for (;;) {  // a handler that throws must not end the API: report it and serve on
        try {
          io_.run();
          return;
        } catch (const std::exception& e) {
          std::fprintf(stderr, "migraine-connector: ingest/admin server: %s\n", e.what());
        }
      }
    });
  }

  ~front_door() {
    io_.stop();
    thread_.join();
  }

 private:
  boost::asio::io_context io_;
  sqlite_outbox store_;
  intake records_;
  std::optional<ingest_api> ingest_;
  std::optional<admin_api> admin_;
  std::unique_ptr<http_server> ingest_server_;
  std::unique_ptr<http_server> admin_server_;
  std::thread thread_;
};

// GET [base]/metadata: tells an idle daemon whether the EHR can be reached (for /readyz and the
// alerts). Returns false when it could not be reached.
bool probe_ehr(delivery_setup& d, event_sink& events) {
  static int probes = 0;
  bool reached = false;
  d.ehr.send({"/metadata", "application/fhir+json", "", "probe-" + std::to_string(++probes)},
             [&](ehr_answer answer) {
               const std::int64_t now = now_ms();
               reached = answer.outcome.what == attempt_outcome::kind::response;
               d.store.note_ehr_contact(reached, reached ? "HTTP " + std::to_string(answer.outcome.http_status) : answer.error,
                                        now);
               if (answer.tls_failure || (reached && (answer.outcome.http_status == 401 || answer.outcome.http_status == 403))) {
                 sync_event e;
                 e.time_ms = now;
                 e.name = answer.tls_failure ? event::tls_fault : event::auth_fault;
                 e.http_status = reached ? answer.outcome.http_status : 0;
                 e.detail = "probe of the EHR: " + (reached ? "HTTP " + std::to_string(answer.outcome.http_status) : answer.error);
                 events.emit(e);
               }
             });
  d.io.restart();
  d.io.run();
  return reached;
}

void daemon_round(delivery_setup& d, std::optional<inbox>& folder, std::optional<alert_monitor>& alerts,
           std::optional<alert_webhook>& webhook, event_sink& events, const connector_config& config,
           std::int64_t& next_inbox, std::int64_t& next_sync, std::int64_t& next_alerts, std::int64_t& last_contact,
           int& unreachable_rounds);

}  // namespace

int run_daemon(const std::vector<std::string>& args) {
  std::vector<std::string> seen;
  const connector_config config = load_config(config_only(args, {}, seen));
  if (config.ehr.base_url.empty()) throw config_error("setting ehr.base_url is required to deliver");
  const std::int64_t started_at = now_ms();
  sync_log log(config.log);
  metrics counters;
  daemon_events events(log, counters);
  delivery_setup d(config, events);
  const patient_key patients = patient_key::load(config.store.patient_key_file);
  intake records(d.store, d.tables, patients, events, now_ms);
  std::optional<inbox> folder;
  if (!config.inbox.dir.empty()) folder.emplace(config.inbox.dir, records, d.store);
  std::optional<alert_monitor> alerts;
  std::optional<alert_webhook> webhook;
  if (config.alerts.enabled) {
    alerts.emplace(config.alerts, d.store, events);
    if (!config.alerts.webhook_url.empty()) webhook.emplace(config.alerts);
  }
  front_door servers(config, log, events, counters, d.tables, patients, started_at);

  d.engine.recover();
  std::signal(SIGTERM, request_stop);
  std::signal(SIGINT, request_stop);
  std::fprintf(stderr, "migraine-connector: delivering to %s; sync log %s%s%s\n", config.ehr.base_url.c_str(),
               config.log.path.c_str(), folder ? "; inbox " : "", folder ? config.inbox.dir.c_str() : "");
  std::fprintf(stderr, "migraine-connector: SIGTERM or SIGINT stops after the requests in flight\n");

  std::int64_t next_inbox = 0, next_sync = 0, next_alerts = 0, last_contact = 0;
  int unreachable_rounds = 0;
  while (!stop_requested) {
    try {
      daemon_round(d, folder, alerts, webhook, events, config, next_inbox, next_sync, next_alerts, last_contact,
            unreachable_rounds);
    } catch (const std::exception& e) {
      // The store busy past its timeout, a full disk: report (these messages carry no record
      // data), wait a second, and go on; nothing was acknowledged that is not stored.
      std::fprintf(stderr, "migraine-connector: %s; trying again in 1 s\n", e.what());
      next_sync = next_inbox = next_alerts = now_ms() + 1000;
    }
    const std::int64_t next = std::min({next_sync, folder ? next_inbox : next_sync, alerts ? next_alerts : next_sync});
    while (!stop_requested && now_ms() < next) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::fprintf(stderr, "migraine-connector: stopped; nothing in flight\n");
  return exit_ok;
}

namespace {

// One pass of the daemon's loop: the inbox, a delivery round, the alerts, whichever is due.
void daemon_round(delivery_setup& d, std::optional<inbox>& folder, std::optional<alert_monitor>& alerts,
           std::optional<alert_webhook>& webhook, event_sink& events, const connector_config& config,
           std::int64_t& next_inbox, std::int64_t& next_sync, std::int64_t& next_alerts, std::int64_t& last_contact,
           int& unreachable_rounds) {
  {
    std::int64_t now = now_ms();
    if (folder && now >= next_inbox) {
      folder->scan();
      next_inbox = now + config.inbox.poll_ms;
    }
    if (now >= next_sync) {
      const sync_report report = d.engine.run_once(&stop_requested);
      const bool attempted = report.delivered + report.dead + report.retries_scheduled > 0 || report.auth_fault;
      if (attempted) {
        print_report(report, d.waiting(), d.ehr.handshakes());
        std::fflush(stdout);
        last_contact = now_ms();
      }
      bool unreachable = report.ehr_unreachable;
      if (!attempted && now - last_contact >= probe_after_idle_ms && !stop_requested) {
        unreachable = !probe_ehr(d, events);
        last_contact = now_ms();
      }
      // The EHR down: back off as a whole, longer each round, rather than try lane after lane.
      unreachable_rounds = unreachable ? unreachable_rounds + 1 : 0;
      std::int64_t wait = idle_ms;
      if (unreachable_rounds > 0) {
        // From one second, doubling, up to sync.max_delay_ms: the EHR, not one record, is failing.
        wait = std::min<std::int64_t>(static_cast<std::int64_t>(1000.0 * std::pow(2.0, std::min(unreachable_rounds - 1, 20))),
                                      config.sync.max_delay_ms);
        std::fprintf(stderr, "migraine-connector: EHR unreachable; next try in %lld ms\n", static_cast<long long>(wait));
      }
      next_sync = now_ms() + wait;
    }
    if (alerts && now >= next_alerts) {
      const std::int64_t at = now_ms();
      const auto changes = alerts->evaluate({d.store.status(at), configured_certificates(config, at / 1000)}, at);
      if (webhook) {
        for (const auto& c : changes) webhook->queue(c);
        if (const auto error = webhook->flush(); !error.empty()) {
          std::fprintf(stderr, "migraine-connector: %s; %zu alert change(s) will be posted again\n", error.c_str(),
                       webhook->waiting());
        }
      }
      next_alerts = now_ms() + alert_check_ms;
    }
  }
}

}  // namespace

}  // namespace connector
