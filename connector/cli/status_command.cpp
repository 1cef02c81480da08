// `status`: the outbox at a glance, for people or (--json) for scripts.
#include <cstdio>

#include "connector/cli/commands.h"
#include "connector/config/config.h"
#include "connector/observe/status_json.h"
#include "connector/observe/sync_log.h"
#include "connector/outbox/open_outbox.h"
#include "fhir/json_writer.h"

namespace connector {

int run_status(const std::vector<std::string>& args) {
  const auto options = parse_store_args(args, false);
  if (!options) {
    std::fprintf(stderr, "usage: migraine-connector status [--config FILE] [--json]\n");
    return exit_usage;
  }
  const connector_config config = load_config(options->config_path);
  const auto store = open_outbox(config.store, {});
  const std::int64_t now = now_ms();
  const outbox_status s = store->status(now);
  if (options->json) {
    fhir::json_writer out;
    out.begin_object();
    write_queue_members(out, s);
    out.key("ehr");
    if (s.ehr_last_contact_ms) {
      out.begin_object();
      out.member_bool("reached", s.ehr_reached);
      out.member("seconds_ago", (now - *s.ehr_last_contact_ms) / 1000);
      out.member("detail", s.ehr_detail);
      out.end_object();
    } else {
      out.raw("null");
    }
    out.end_object();
    std::printf("%.*s\n", static_cast<int>(out.view().size()), out.view().data());
    return exit_ok;
  }
  std::printf("store: %s\n", store_name(config.store).c_str());
  std::printf("records:");
  for (const auto& [state, n] : s.records) {
    std::printf(" %s %lld", std::string(to_string(state)).c_str(), static_cast<long long>(n));
  }
  std::printf("\nquarantined (rejected, kept with their problems): %lld\n",
              static_cast<long long>(s.quarantined));
  if (s.maybe_at_ehr > 0) {
    std::printf("possibly at the EHR (sent, no answer; treated as delivered by amendments): %lld\n",
                static_cast<long long>(s.maybe_at_ehr));
  }
  std::printf("oldest pending: %s\n",
              s.oldest_pending_age_ms ? duration_text(*s.oldest_pending_age_ms).c_str() : "none");
  std::printf("last error: %s\n", s.last_error ? printable(*s.last_error).c_str() : "none");
  if (s.ehr_last_contact_ms) {
    std::printf("EHR: %s %s ago (%s)\n", s.ehr_reached ? "reached" : "NOT reached",
                duration_text(now - *s.ehr_last_contact_ms).c_str(), printable(s.ehr_detail).c_str());
  } else {
    std::printf("EHR: not contacted yet\n");
  }
  std::printf("writing to the EHR: %s\n", s.write_strategy.empty() ? "not read yet (ehr.write_mode transaction, or never delivered)"
                                                                   : printable(s.write_strategy).c_str());
  if (s.owners.empty()) std::printf("processes delivering: none\n");
  for (const auto& o : s.owners) {
    std::string holds = std::to_string(o.claims) + " in flight";
    if (o.lease_until_ms) holds += " (leases until " + utc_text(*o.lease_until_ms) + ")";
    for (const auto& role : o.leads) holds += ", leads the " + printable(role);
    for (const auto& c : o.conditions) holds += ", sees " + printable(c.key);
    std::printf("process delivering: %s pid %lld%s since %s, %s%s\n", printable(o.kind).c_str(),
                static_cast<long long>(o.pid), o.host.empty() ? "" : (" on " + printable(o.host)).c_str(),
                utc_text(o.started_at_ms).c_str(), holds.c_str(),
                o.alive ? "" : " (gone: its claims are taken back by the next process)");
  }
  return exit_ok;
}

}  // namespace connector
