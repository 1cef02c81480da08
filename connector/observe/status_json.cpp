// The shared members of the two status answers.
#include "connector/observe/status_json.h"

#include "connector/observe/sync_log.h"

namespace connector {

void write_queue_members(fhir::json_writer& out, const outbox_status& s) {
  out.key("records");
  out.begin_object();
  for (const auto& [state, n] : s.records) out.member(to_string(state), n);
  out.end_object();
  out.member("quarantined", s.quarantined);
  out.member("maybe_at_ehr", s.maybe_at_ehr);
  if (!s.write_strategy.empty()) out.member("write_strategy", s.write_strategy);
  out.key("oldest_pending_age_s");
  s.oldest_pending_age_ms ? out.integer(*s.oldest_pending_age_ms / 1000) : out.raw("null");
  out.key("last_error");
  s.last_error ? out.string(*s.last_error) : out.raw("null");
  out.key("processes");
  out.begin_array();
  for (const auto& o : s.owners) {
    out.begin_object();
    out.member("kind", o.kind);
    out.member("pid", o.pid);
    out.member("since", utc_text(o.started_at_ms));
    out.member_bool("alive", o.alive);
    out.member("in_flight", o.claims);
    out.end_object();
  }
  out.end_array();
}

}  // namespace connector
