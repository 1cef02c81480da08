// What both stores share: the names of states and results, and problems as they are stored.
#include "connector/outbox/outbox.h"

#include "fhir/json_writer.h"

namespace connector {

std::string_view to_string(record_state s) {
  switch (s) {
    case record_state::pending: return "pending";
    case record_state::in_flight: return "in_flight";
    case record_state::retry_scheduled: return "retry_scheduled";
    case record_state::delivered: return "delivered";
    case record_state::dead: return "dead";
    case record_state::superseded: return "superseded";
    case record_state::held: return "held";
  }
  return "pending";
}

std::string_view to_string(enqueue_result r) {
  switch (r) {
    case enqueue_result::accepted: return "accepted";
    case enqueue_result::accepted_superseding: return "accepted, superseding an undelivered revision";
    case enqueue_result::duplicate: return "duplicate";
    case enqueue_result::stale: return "stale";
    case enqueue_result::other_patient: return "refused: another patient's record";
  }
  return "accepted";
}

std::string_view to_string(store_error::kind k) {
  switch (k) {
    case store_error::kind::busy: return "busy";
    case store_error::kind::full: return "full";
    case store_error::kind::unwritable: return "unwritable";
    case store_error::kind::other: return "failed";
  }
  return "failed";
}

std::optional<record_state> record_state_named(std::string_view name) {
  for (auto s : all_record_states) {
    if (to_string(s) == name) return s;
  }
  return std::nullopt;
}

std::string_view state_after(attempt_report::result r) {
  using result = attempt_report::result;
  switch (r) {
    case result::delivered: return "delivered";
    case result::dead: return "dead";
    case result::retry: return "retry_scheduled";
    case result::held: return "held";
    case result::released: return "retry_scheduled";  // not attempted: the count is undone
  }
  return "retry_scheduled";
}

std::string problems_as_outcome(const fhir::issues& problems) {
  fhir::json_writer out;
  fhir::write_operation_outcome(out, problems);
  return std::string(out.view());
}

}  // namespace connector
