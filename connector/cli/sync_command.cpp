// `sync --once`: deliver everything deliverable now, then exit.
#include <cstdio>

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
  delivery_setup d(config, log);
  d.engine.recover();
  const sync_report report = d.engine.run_once();
  const std::int64_t waiting = d.waiting();
  print_report(report, waiting, d.ehr.handshakes());
  return waiting > 0 ? exit_waiting : exit_ok;
}

}  // namespace connector
