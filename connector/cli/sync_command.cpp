// `sync --once`: deliver everything deliverable now, then exit. Beside a running daemon it works
// only the lanes nobody holds: it registers as a claim holder of its own, and the daemon's records
// in flight are the daemon's (see outbox.h: claims, leases, fencing).
#include <csignal>
#include <cstdio>

#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include "connector/cli/commands.h"
#include "connector/config/config.h"
#include "connector/daemon/delivery_setup.h"
#include "connector/observe/sync_log.h"

namespace connector {

int run_sync(const std::vector<std::string>& args) {
  std::vector<std::string> seen;
  const auto config_path = config_only(args, {"--once"}, seen);
  if (seen.empty()) {
    std::fprintf(stderr, "usage: migraine-connector sync --once [--config FILE]\n");
    return exit_usage;
  }
  const connector_config config = load_config(config_path);
  if (config.ehr.base_url.empty()) throw config_error("setting ehr.base_url is required to deliver");
  sync_log log(config.log);
  boost::asio::io_context loop;
  sync_report report;
  std::int64_t waiting = 0, handshakes = 0;
  {
    delivery_setup d(config, loop, log, "sync");
    boost::asio::steady_timer closing(loop);
    auto finish = [&] {
      d.ehr.close_idle();  // TLS close_notify, then the loop runs out of work
      closing.expires_after(std::chrono::milliseconds(200));
      closing.async_wait([&](boost::system::error_code) { loop.stop(); });
    };
    // SIGTERM or SIGINT: take no new record, settle the ones in flight, exit.
    boost::asio::signal_set signals(loop, SIGTERM, SIGINT);
    signals.async_wait([&](boost::system::error_code ec, int) {
      if (!ec) d.engine.stop(finish);
    });
    d.engine.start(d.owner, [&] {
      signals.cancel();
      finish();
    });
    loop.run();
    report = d.engine.report();
    handshakes = d.ehr.handshakes();
  }
  const outbox_status s = open_outbox(config.store, {})->status(now_ms());
  waiting = s.records.at(record_state::pending) + s.records.at(record_state::retry_scheduled) +
            s.records.at(record_state::in_flight) + s.records.at(record_state::held);
  print_report(report, waiting, handshakes);
  if (report.store_error) std::printf("store: %s\n", report.store_error->c_str());
  return waiting > 0 ? exit_waiting : exit_ok;
}

}  // namespace connector
