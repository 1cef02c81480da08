// `run`: the daemon. One event loop (the main thread) carries everything that waits on the
// network or a clock: the delivery pump (sync_engine), the EHR's connections, the ingest API and
// the admin server, and timers for the inbox scan, the alert evaluation, the idle EHR probe and
// the webhook posts; SIGTERM and SIGINT arrive through a signal_set. Nothing on that thread waits
// for the disk: three store workers, each a thread with its own connection, do the store's work:
//   delivery  claims, settles, the sweep                  (delivery_setup)
//   intake    inbox files, ingest API commits, replays, alerts
//   reader    the admin API's reads                        (status page, metrics, /readyz)
// so /healthz answers during a large ingest, and a busy store slows delivery without stopping it.
#include <atomic>
#include <csignal>
#include <cstdio>
#include <memory>
#include <mutex>
#include <optional>

#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include "connector/admin/admin_api.h"
#include "connector/cli/commands.h"
#include "connector/config/certificate_files.h"
#include "connector/config/config.h"
#include "connector/config/patient_key.h"
#include "connector/daemon/delivery_setup.h"
#include "connector/daemon/systemd_notify.h"
#include "connector/intake/inbox.h"
#include "connector/intake/ingest_api.h"
#include "connector/intake/intake.h"
#include "connector/net/http_server.h"
#include "connector/observe/alerts.h"
#include "connector/observe/metrics.h"
#include "connector/observe/sync_log.h"
#include "connector/observe/webhook.h"

#ifndef MIGRAINE_CONNECTOR_VERSION
#define MIGRAINE_CONNECTOR_VERSION "unknown"
#endif

namespace connector {
namespace {

namespace asio = boost::asio;

constexpr auto alert_check = std::chrono::seconds(5);   // how often alert conditions are evaluated
// The alerts' leader holds its lease this long (several instances on one store): a frozen leader
// is replaced after it; a killed one at once, its session gone.
constexpr std::int64_t alert_lease_ms = 15000;
constexpr std::int64_t probe_after_idle_ms = 60000;     // an idle daemon checks the EHR this often
// The EHR's CapabilityStatement is read at start and this often; after a refused write, and while
// the strategy read cannot deliver or could not be read, every 15 s.
constexpr std::int64_t capabilities_every_ms = 10 * 60000;
constexpr std::int64_t capabilities_when_wrong_ms = 15000;

// The daemon's events go to the sync log and to the metrics; the store's degraded mode, which
// the engine announces as events, is also kept for /readyz (read from the reader's thread).
class daemon_events : public event_sink {
 public:
  daemon_events(sync_log& log, metrics& counters) : log_(log), counters_(counters) {}
  void emit(const sync_event& e) override {
    log_.emit(e);
    counters_.emit(e);
    if (e.name == event::write_refused) ++write_refusals_;
    if (e.name == event::store_degraded || e.name == event::store_restored) {
      std::lock_guard lock(mutex_);
      health_.store_degraded = e.name == event::store_degraded;
      health_.store_problem = health_.store_degraded ? e.detail : "";
    }
    // What staff must see even when the sync log cannot be written (its disk full, say).
    if (e.name == event::store_degraded || e.name == event::store_restored || e.name == event::claim_recovered ||
        e.name == event::alert_opened || e.name == event::alert_closed) {
      std::fprintf(stderr, "migraine-connector: %s: %s\n", std::string(e.name).c_str(), e.detail.c_str());
    }
  }
  delivery_health health() const {
    std::lock_guard lock(mutex_);
    return health_;
  }
  // From the event loop: what /metadata said, or why it could not be read.
  void publish_capabilities(std::optional<write_strategy> strategy, std::string software, std::string error,
                            std::int64_t at_ms) {
    std::lock_guard lock(mutex_);
    if (strategy) {
      health_.write = std::move(strategy);
      health_.write_software = std::move(software);
    }
    health_.capabilities_error = std::move(error);
    health_.capabilities_read_at_ms = at_ms;
  }
  // write_refused events seen so far: the EHR's capabilities are read again after one.
  std::int64_t write_refusals() const { return write_refusals_.load(); }
  // From the event loop, where the token lives.
  void publish_auth(const access_tokens* tokens) {
    if (tokens == nullptr) return;
    std::lock_guard lock(mutex_);
    health_.auth = tokens->status();
    health_.auth_published_steady_ms = steady_ms();
  }

 private:
  sync_log& log_;
  metrics& counters_;
  mutable std::mutex mutex_;
  delivery_health health_;
  std::atomic<std::int64_t> write_refusals_{0};
};

std::string url_of(const listen_address& a, bool tls) {
  const bool v6 = a.host.find(':') != std::string::npos;
  return std::string(tls ? "https://" : "http://") + (v6 ? "[" + a.host + "]" : a.host);
}

// The daemon's parts and its timers, in the order they are built and (reversed) torn down: the
// workers are destroyed before the objects their jobs use, and the loop last of all.
class daemon {
 public:
  daemon(const connector_config& config, sync_log& log)
      : config_(config),
        events_(log, counters_),
        delivery_(config, loop_, events_, "daemon"),
        intake_store_(open_outbox(config.store, store_access_of(config.store, events_))),
        reader_store_(open_outbox(config.store, reader_access(config.store))),
        patients_(patient_key::open_for(*intake_store_, config.store.patient_key_file)),
        records_(delivery_.mappings, patients_, events_, now_ms),
        intake_worker_(loop_, *intake_store_),
        reader_worker_(loop_, *reader_store_),
        signals_(loop_, SIGTERM, SIGINT),
        reload_signal_(loop_, SIGHUP),
        inbox_timer_(loop_),
        alert_timer_(loop_),
        probe_timer_(loop_),
        closing_timer_(loop_),
        started_at_(now_ms()),
        log_(log) {
    if (!config.inbox.dir.empty()) folder_.emplace(config.inbox.dir, records_);
    if (config.alerts.enabled) {
      alerts_.emplace(config.alerts, events_);
      if (!config.alerts.webhook_url.empty()) webhook_.emplace(loop_, config.alerts);
    }
    start_listeners();
  }

  int run() {
    signals_.async_wait([this](boost::system::error_code ec, int) {
      if (!ec) shut_down();
    });
    wait_for_reload();
    std::fprintf(stderr, "migraine-connector: delivering to %s; sync log %s%s%s\n", config_.ehr.base_url.c_str(),
                 config_.log.path.c_str(), folder_ ? "; inbox " : "", folder_ ? config_.inbox.dir.c_str() : "");
    std::fprintf(stderr, "migraine-connector: SIGTERM or SIGINT stops after the requests in flight; "
                         "SIGHUP reloads certificates, keys, secrets, tokens and code tables\n");
    events_.publish_auth(delivery_.tokens.get());
    delivery_.engine.start(delivery_.owner);
    if (folder_) scan_inbox();
    if (alerts_) arm(alert_timer_, alert_check, [this] { evaluate_alerts(); });
    read_capabilities_if_due();
    arm(probe_timer_, std::chrono::seconds(5), [this] { probe_if_idle(); });
    // The store is open and the listeners are bound (the constructor did both, or threw).
    notify_systemd("READY=1\nSTATUS=delivering to " + config_.ehr.base_url);
    if (const auto interval = systemd_watchdog_interval()) {
      watchdog_every_ = std::chrono::duration_cast<std::chrono::milliseconds>(*interval / 2);
      ping_watchdog();
    }
    loop_.run();
    std::fprintf(stderr, "migraine-connector: stopped; nothing in flight\n");
    return exit_ok;
  }

 private:
  static store_access reader_access(const store_config&) {
    store_access a;
    a.busy_timeout_ms = 250;  // the admin API asks, it does not wait: a busy store is an answer too
    a.busy_attempts = 1;
    return a;
  }

  template <typename F>
  void arm(asio::steady_timer& timer, std::chrono::milliseconds in, F then) {
    timer.expires_after(in);
    timer.async_wait([this, then](boost::system::error_code ec) {
      if (!ec && !stopping_) then();
    });
  }

  void start_listeners() {
    if (const auto& api = config_.ingest_api; api.listen) {
      std::optional<std::string> token;
      if (api.token_file) token = read_secret_file("ingest_api.token_file", *api.token_file);
      ingest_.emplace(intake_worker_, records_, token, [this] { delivery_.engine.wake(); }, api.max_records);
      ingest_server_ = std::make_unique<http_server>(
          loop_,
          server_settings{"ingest_api", *api.listen, api.cert_file, api.key_file, api.client_ca_file, api.max_body_bytes,
                          std::chrono::seconds(30), [this](const http_request& head) { return ingest_->screen(head); }},
          [this](const http_request& r, http_respond respond) { ingest_->handle(r, std::move(respond)); });
      listeners_.emplace_back("ingest_api", ingest_server_->stats());
      std::fprintf(stderr, "migraine-connector: ingest API on %s:%u/v1/records (%s)\n",
                   url_of(*api.listen, api.cert_file.has_value()).c_str(), ingest_server_->port(),
                   api.client_ca_file ? (token ? "client certificate and token" : "client certificate") : "token");
    }
    if (const auto& admin = config_.admin; admin.listen) {
      std::optional<std::string> token;
      if (admin.token_file) token = read_secret_file("admin.token_file", *admin.token_file);
      std::string ingest_address;
      if (ingest_server_) ingest_address = config_.ingest_api.listen->host + ":" + std::to_string(ingest_server_->port());
      admin_.emplace(admin_context{reader_worker_, intake_worker_, [this] { return events_.health(); }, counters_,
                                   events_, config_, now_ms, MIGRAINE_CONNECTOR_VERSION, started_at_, token,
                                   ingest_address, &log_, [this] { return listener_figures_now(); },
                                   delivery_.owner});
      admin_server_ = std::make_unique<http_server>(
          loop_,
          server_settings{"admin", *admin.listen, admin.cert_file, admin.key_file, std::nullopt, 64 * 1024,
                          std::chrono::seconds(30), [this](const http_request& head) { return admin_->screen(head); }},
          [this](const http_request& r, http_respond respond) { admin_->handle(r, std::move(respond)); });
      listeners_.emplace_back("admin", admin_server_->stats());
      std::fprintf(stderr, "migraine-connector: status page and admin API on %s:%u/\n",
                   url_of(*admin.listen, admin.cert_file.has_value()).c_str(), admin_server_->port());
    }
  }

  std::vector<listener_figures> listener_figures_now() const {
    std::vector<listener_figures> out;
    for (const auto& [name, s] : listeners_) {
      out.push_back({name, s->open.load(), s->evicted.load(), s->refused.load(), s->handshake_failures.load()});
    }
    return out;
  }

  // One scan at a time, on the intake worker; the next one inbox.poll_ms after it finished.
  void scan_inbox() {
    intake_worker_.run([this](outbox& s) { return folder_->scan(s); },
                       [this](store_result<int> r) {
                         if (r.ok() && *r.value > 0) delivery_.engine.wake();
                         arm(inbox_timer_, std::chrono::milliseconds(config_.inbox.poll_ms), [this] { scan_inbox(); });
                       });
  }

  // On the intake worker: its jobs may use the daemon's parts, which outlive it.
  void evaluate_alerts() {
    const int waiting_for_party = delivery_.engine.waiting_for_party();  // the engine's, read on the loop
    intake_worker_.run([this, waiting_for_party](outbox& s) { return alert_changes(s, waiting_for_party); },
                       [this](store_result<std::vector<alert_change>> r) {
                         if (r.ok() && webhook_) {
                           for (const auto& c : *r.value) webhook_->queue(c);
                           webhook_->flush();
                         }
                         arm(alert_timer_, alert_check, [this] { evaluate_alerts(); });
                       });
  }

  // Every instance publishes what only it sees; the one that leads the alerts (one per store:
  // SQLite's single daemon always does) evaluates them all and returns what to post.
  std::vector<alert_change> alert_changes(outbox& s, int waiting_for_party) {
    const std::int64_t at = now_ms();
    alert_inputs in;
    in.certificates = configured_certificates(config_, at / 1000);
    in.sync_log_failing = log_.failing() ? log_.settings().path : std::string();
    in.waiting_for_party = waiting_for_party;
    try {
      s.note_owner_conditions(delivery_.owner, own_conditions(config_.alerts, in, at));
    } catch (const store_error&) {  // published at the next evaluation
    }
    const std::int64_t steady = steady_ms();
    try {
      led_until_steady_ = s.lead("alerts", delivery_.owner, at, alert_lease_ms) ? steady + alert_lease_ms : 0;
    } catch (const store_error&) {
      // Who leads cannot be learnt: a leader goes on alone until its lease would have run out
      // (after that another instance may lead), then stays quiet.
    }
    if (steady >= led_until_steady_) {
      alerts_->hand_over(s);
      last_status_.reset();
      return {};
    }
    in.store_problem = s.write_problem();
    try {
      last_status_ = s.status(at);
    } catch (const store_error&) {
      // Evaluated all the same, on what this leader last read: write_problem says why (a
      // PostgreSQL server that cannot be reached); a busy read passes by itself.
    }
    if (!last_status_) return {};
    in.status = *last_status_;
    const auto name = [](const owner_summary& o) {
      return o.kind + " pid " + std::to_string(o.pid) + (o.host.empty() ? "" : " on " + o.host);
    };
    for (const auto& o : in.status.owners) {
      if (o.id == delivery_.owner) in.instance = name(o);
      else if (o.alive && o.kind == "daemon") in.others.push_back({name(o), o.conditions});
    }
    return alerts_->evaluate(s, in, at);
  }

  // GET [base]/metadata: the write strategy from what the EHR says it supports, shown by the admin
  // API and the status page, logged when it changes, and followed by delivery (which waits for
  // the first one unless ehr.write_mode is transaction). Until one has been read, asked at every probe.
  void read_capabilities_if_due() {
    const std::int64_t now = steady_ms();
    const bool wrong = events_.write_refusals() != refusals_at_last_read_ || !last_read_delivers_;
    const bool due = capabilities_asked_at_ == 0 || now - capabilities_asked_at_ >= capabilities_every_ms ||
                     (wrong && now - capabilities_asked_at_ >= capabilities_when_wrong_ms) ||
                     (!ever_read_ && now - capabilities_asked_at_ >= 2000);
    if (!due || reading_capabilities_ || stopping_) return;
    capabilities_asked_at_ = now;
    refusals_at_last_read_ = events_.write_refusals();
    reading_capabilities_ = true;
    delivery_.read_write_strategy(config_, "capabilities-" + std::to_string(++probes_), [this](const strategy_read& r) {
      reading_capabilities_ = false;
      if (!r.strategy) {
        last_read_delivers_ = false;
        events_.publish_capabilities(std::nullopt, "", r.error, now_ms());
        return;
      }
      const auto& strategy = *r.strategy;
      const std::string summary = std::string(name_of(strategy.mode)) + " (" + strategy.why + ")" +
                                  (strategy.deliverable ? "" : "; cannot deliver this way: " + strategy.not_deliverable_because);
      if (summary != last_strategy_summary_) {
        last_strategy_summary_ = summary;
        sync_event e;
        e.time_ms = now_ms();
        e.name = event::write_strategy;
        e.detail = "ehr.write_mode " + config_.ehr.write_mode + ": " + summary;
        events_.emit(e);
      }
      last_read_delivers_ = strategy.deliverable;
      ever_read_ = true;
      events_.publish_capabilities(strategy, r.software, "", now_ms());
    });
  }

  // GET [base]/metadata when nothing was sent for a minute: tells /readyz and the alerts whether
  // the EHR can be reached while there is nothing to deliver.
  void probe_if_idle() {
    events_.publish_auth(delivery_.tokens.get());
    read_capabilities_if_due();
    const std::int64_t now = steady_ms();
    const std::int64_t last = std::max(last_probe_, delivery_.engine.last_answer_steady_ms().value_or(0));
    if (delivery_.engine.in_flight() == 0 && now - last >= probe_after_idle_ms) {
      last_probe_ = now;
      // Through the token, when there is one: a refused token keeps its alert open, and the
      // probe is also how a paused daemon notices the EHR took the credentials back.
      delivery_.channel.send(
          metadata_request("probe-" + std::to_string(++probes_)),
          [this](ehr_answer answer) {
            const bool reached = answer.outcome.what == attempt_outcome::kind::response ||
                                 answer.outcome.what == attempt_outcome::kind::credentials_refused;
            const bool http = answer.outcome.what == attempt_outcome::kind::response;
            const ehr_contact contact{reached, http ? "HTTP " + std::to_string(answer.outcome.http_status) : answer.error};
            delivery_.worker.run([contact](outbox& s) { s.note_ehr_contact(contact, now_ms()); },
                                 [](store_result<bool>) {});
            const int status = reached ? answer.outcome.http_status : 0;
            const bool refused = answer.outcome.what == attempt_outcome::kind::credentials_refused;
            if (answer.tls_failure || status == 401 || status == 403 || refused) {
              sync_event e;
              e.time_ms = now_ms();
              e.name = answer.tls_failure ? event::tls_fault : event::auth_fault;
              e.http_status = status;
              e.detail = "probe of the EHR: " + contact.detail;
              events_.emit(e);
            }
          });
    }
    arm(probe_timer_, std::chrono::seconds(5), [this] { probe_if_idle(); });
  }

  // SIGHUP reads again, without a restart: the certificates and keys of the EHR client and of both
  // listeners (for new connections; requests in flight finish on theirs), ehr.auth's private key
  // or client secret (for the next token request), the code tables (for records read or claimed
  // from now on) and the listeners' token files. A file that cannot be loaded is refused and the
  // one in use stays. Every other setting is read at start only: changing it needs a restart.
  void wait_for_reload() {
    reload_signal_.async_wait([this](boost::system::error_code ec, int) {
      if (ec || stopping_) return;
      notify_systemd("RELOADING=1");
      int failures = 0;
      const auto reload = [&](const char* what, const auto& load) {
        try {
          if (load()) std::fprintf(stderr, "migraine-connector: reload: %s: read again\n", what);
        } catch (const std::exception& e) {
          ++failures;
          std::fprintf(stderr, "migraine-connector: reload: %s: %s; the files in use stay in use\n", what, e.what());
        }
      };
      reload("ehr", [this] { delivery_.ehr.reload_tls(); return true; });
      if (delivery_.tokens) reload("ehr.auth", [this] { return delivery_.tokens->reload_credentials(); });
      reload("mapping.code_tables", [this] {
        delivery_.mappings.replace(mappings::mapping_set::load(config_.code_tables_path, config_.mapping));
        return true;
      });
      if (ingest_server_) reload("ingest_api", [this] { return ingest_server_->reload_tls(); });
      if (admin_server_) reload("admin", [this] { return admin_server_->reload_tls(); });
      // The listeners' tokens: the new one is checked from the next request on.
      if (ingest_ && config_.ingest_api.token_file) {
        reload("ingest_api.token_file", [this] {
          ingest_->set_token(read_secret_file("ingest_api.token_file", *config_.ingest_api.token_file));
          return true;
        });
      }
      if (admin_ && config_.admin.token_file) {
        reload("admin.token_file", [this] {
          admin_->set_token(read_secret_file("admin.token_file", *config_.admin.token_file));
          return true;
        });
      }
      std::fprintf(stderr, "migraine-connector: reload done (%s); other settings need a restart\n",
                   failures == 0 ? "all read" : "some refused");
      notify_systemd(failures == 0 ? "READY=1\nSTATUS=reloaded" : "READY=1\nSTATUS=reload refused a file; see the journal");
      wait_for_reload();
    });
  }

  // From the event loop itself, so a loop that stops turning stops the pings and systemd
  // restarts the daemon (WatchdogSec in the unit).
  void ping_watchdog() {
    notify_systemd("WATCHDOG=1");
    arm(watchdog_timer_, watchdog_every_, [this] { ping_watchdog(); });
  }

  // No new work; the requests in flight are answered and settled; then the loop ends.
  void shut_down() {
    if (stopping_) return;
    stopping_ = true;
    notify_systemd("STOPPING=1");
    watchdog_timer_.cancel();
    reload_signal_.cancel();
    std::fprintf(stderr, "migraine-connector: stopping: no new records; finishing the requests in flight\n");
    ingest_server_.reset();
    admin_server_.reset();
    inbox_timer_.cancel();
    alert_timer_.cancel();
    probe_timer_.cancel();
    delivery_.engine.stop([this] {
      delivery_.ehr.close_idle();  // TLS close_notify
      closing_timer_.expires_after(std::chrono::milliseconds(200));
      closing_timer_.async_wait([this](boost::system::error_code) { loop_.stop(); });
    });
  }

  const connector_config& config_;
  asio::io_context loop_;
  metrics counters_;
  daemon_events events_;
  delivery_setup delivery_;
  std::unique_ptr<outbox> intake_store_;
  std::unique_ptr<outbox> reader_store_;
  patient_key patients_;
  intake records_;
  std::optional<inbox> folder_;
  std::optional<alert_monitor> alerts_;
  // The intake worker's: this instance evaluates and posts the alerts until then (steady ms), and
  // the store as it last read it while leading.
  std::int64_t led_until_steady_ = 0;
  std::optional<outbox_status> last_status_;
  std::optional<alert_webhook> webhook_;
  std::optional<ingest_api> ingest_;
  std::optional<admin_api> admin_;
  std::unique_ptr<http_server> ingest_server_;
  std::unique_ptr<http_server> admin_server_;
  // Filled before the loop runs, read by the admin API's reader thread afterwards.
  std::vector<std::pair<std::string, std::shared_ptr<const listener_stats>>> listeners_;
  store_worker intake_worker_;
  store_worker reader_worker_;
  asio::signal_set signals_;
  asio::signal_set reload_signal_;
  asio::steady_timer inbox_timer_;
  asio::steady_timer alert_timer_;
  asio::steady_timer probe_timer_;
  asio::steady_timer closing_timer_;
  asio::steady_timer watchdog_timer_{loop_};
  std::chrono::milliseconds watchdog_every_{0};
  std::int64_t started_at_;
  sync_log& log_;
  std::int64_t last_probe_ = 0;
  std::int64_t capabilities_asked_at_ = 0;  // steady ms
  std::int64_t refusals_at_last_read_ = 0;
  bool reading_capabilities_ = false;
  bool ever_read_ = false;  // a CapabilityStatement has been read since start
  bool last_read_delivers_ = true;
  std::string last_strategy_summary_;
  int probes_ = 0;
  bool stopping_ = false;
};

}  // namespace

int run_daemon(const std::vector<std::string>& args) {
  std::vector<std::string> seen;
  const connector_config config = load_config(config_only(args, {}, seen));
  if (config.ehr.base_url.empty()) throw config_error("setting ehr.base_url is required to deliver");
  sync_log log(config.log);
  return daemon(config, log).run();
}

}  // namespace connector
