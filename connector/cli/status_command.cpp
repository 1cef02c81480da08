// `status`: the outbox at a glance, for people or (--json) for scripts.
#include <cstdio>

#include "connector/cli/commands.h"
#include "connector/config/config.h"
#include "connector/daemon/delivery_setup.h"
#include "connector/outbox/sqlite_outbox.h"
#include "fhir/json_writer.h"

namespace connector {

int run_status(const std::vector<std::string>& args) {
  const auto options = parse_store_args(args, false);
  if (!options) {
    std::fprintf(stderr, "usage: migraine-connector status [--config FILE] [--json]\n");
    return exit_usage;
  }
  const connector_config config = load_config(options->config_path);
  sqlite_outbox store(config.store.path, config.store.full_sync);
  const outbox_status s = store.status(now_ms());
  if (options->json) {
    std::printf("{\"records\":{");
    bool first = true;
    for (const auto& [state, n] : s.records) {
      std::printf("%s\"%s\":%lld", first ? "" : ",", std::string(to_string(state)).c_str(),
                  static_cast<long long>(n));
      first = false;
    }
    std::printf("},\"quarantined\":%lld,\"oldest_pending_age_s\":", static_cast<long long>(s.quarantined));
    if (s.oldest_pending_age_ms) {
      std::printf("%lld", static_cast<long long>(*s.oldest_pending_age_ms / 1000));
    } else {
      std::printf("null");
    }
    std::printf(",\"last_error\":");
    if (s.last_error) {
      fhir::json_writer text;
      text.string(*s.last_error);
      std::printf("%.*s", static_cast<int>(text.view().size()), text.view().data());
    } else {
      std::printf("null");
    }
    std::printf(",\"ehr\":");
    if (s.ehr_last_contact_ms) {
      fhir::json_writer detail;
      detail.string(s.ehr_detail);
      std::printf("{\"reached\":%s,\"seconds_ago\":%lld,\"detail\":%.*s}", s.ehr_reached ? "true" : "false",
                  static_cast<long long>((now_ms() - *s.ehr_last_contact_ms) / 1000),
                  static_cast<int>(detail.view().size()), detail.view().data());
    } else {
      std::printf("null");
    }
    std::printf("}\n");
    return exit_ok;
  }
  std::printf("store: %s\n", config.store.path.c_str());
  std::printf("records:");
  for (const auto& [state, n] : s.records) {
    std::printf(" %s %lld", std::string(to_string(state)).c_str(), static_cast<long long>(n));
  }
  std::printf("\nquarantined (rejected, kept with their problems): %lld\n",
              static_cast<long long>(s.quarantined));
  std::printf("oldest pending: %s\n",
              s.oldest_pending_age_ms ? duration_text(*s.oldest_pending_age_ms).c_str() : "none");
  std::printf("last error: %s\n", s.last_error ? s.last_error->c_str() : "none");
  if (s.ehr_last_contact_ms) {
    std::printf("EHR: %s %s ago (%s)\n", s.ehr_reached ? "reached" : "NOT reached",
                duration_text(now_ms() - *s.ehr_last_contact_ms).c_str(), s.ehr_detail.c_str());
  } else {
    std::printf("EHR: not contacted yet\n");
  }
  return exit_ok;
}

}  // namespace connector
