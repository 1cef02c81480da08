// The shared members of the two status answers.
#include "connector/observe/status_json.h"

#include "connector/observe/sync_log.h"

namespace connector {

void write_queue_members(fhir::json_writer& out, const outbox_status& s, std::int64_t self) {
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
    out.member("id", o.id);
    out.member("kind", o.kind);
    out.member("pid", o.pid);
    if (!o.host.empty()) out.member("host", o.host);
    out.member("since", utc_text(o.started_at_ms));
    out.member_bool("alive", o.alive);
    if (self != 0) out.member_bool("this", o.id == self);
    out.member("in_flight", o.claims);
    out.key("lease_until");
    o.lease_until_ms ? out.string(utc_text(*o.lease_until_ms)) : out.raw("null");
    out.key("leads");
    out.begin_array();
    for (const auto& role : o.leads) out.string(role);
    out.end_array();
    out.key("conditions");  // what it alone sees, published for the alerts' leader
    out.begin_array();
    for (const auto& c : o.conditions) out.string(c.key);
    out.end_array();
    out.end_object();
  }
  out.end_array();
}

}  // namespace connector
