// The delivery loop.
#include "connector/sync/sync_engine.h"

#include <boost/asio/post.hpp>

#include "fhir/json_writer.h"
#include "fhir/transaction_response.h"
#include "mappings/record_reader.h"

namespace connector {

namespace {

constexpr std::int64_t auth_pause_ms = 5 * 60 * 1000;  // a credentials fault needs a person

// What the EHR made of each entry, kept with the record: ["201 Created Encounter/12/_history/1", ...].
// The whole answer when it is not a transaction-response (kept for a person to read).
std::string what_the_ehr_made(const std::string& body) {
  const auto responses = fhir::read_transaction_response(body);
  if (!responses) return body;
  fhir::json_writer out;
  out.begin_array();
  for (const auto& r : *responses) out.string(r.location.empty() ? r.status : r.status + " " + r.location);
  out.end_array();
  return std::string(out.view());
}

}  // namespace

sync_engine::sync_engine(boost::asio::io_context& io, outbox& store, ehr_client& ehr,
                         const mappings::bundle_mapper& mapper, const mappings::code_tables& tables,
                         delivery_policy policy, clock_ms now)
    : io_(io), store_(store), ehr_(ehr), mapper_(mapper), tables_(tables), policy_(std::move(policy)),
      now_(std::move(now)) {}

int sync_engine::recover() { return store_.recover_in_flight(now_()); }

sync_report sync_engine::run_once(const std::atomic<bool>* stop) {
  report_ = {};
  stop_claiming_ = false;
  stop_ = stop;
  boost::asio::post(io_, [this] { pump(); });
  io_.restart();
  io_.run();
  return report_;
}

void sync_engine::pump() {
  while (!stop_claiming_ && !(stop_ != nullptr && *stop_) && ehr_.free_connections() > 0) {
    const auto claimed = store_.claim(now_(), ehr_.free_connections());
    if (claimed.empty()) return;
    for (const auto& c : claimed) deliver(c);
  }
}

void sync_engine::deliver(const claimed_record& record) {
  const std::int64_t now = now_();
  auto read = mappings::read_record(record.body, tables_);
  if (!read.record) {  // valid at ingest; only a code-table change can make it invalid now
    ++report_.dead;
    store_.settle(record, {attempt_report::result::dead, 0, "no longer valid against the code tables", ""}, now);
    return;
  }
  mappings::patient_history history;
  for (const auto& body : store_.delivered_bodies(record.patient_key)) {
    if (auto earlier = mappings::read_record(body, tables_); earlier.record) history.add(std::move(*earlier.record));
  }
  fhir::json_writer bundle;
  const auto outcome = mapper_.map(*read.record, history, bundle);
  if (outcome.result == mappings::mapping_result::waits) {
    ++report_.held;
    store_.settle(record, {attempt_report::result::held, 0, "waits for procedure " + *outcome.waits_for_record, ""}, now);
    return;
  }
  if (outcome.result == mappings::mapping_result::stale) {
    store_.settle(record, {attempt_report::result::delivered, 0, "", "no-op: a newer revision was delivered"}, now);
    return;
  }
  const std::string request_id = record.record_id + "/r" + std::to_string(record.revision) + "/a" +
                                 std::to_string(record.attempts);
  ehr_.post_transaction(std::string(bundle.view()), request_id,
                        [this, record](ehr_answer answer) { on_answer(record, answer); });
}

void sync_engine::on_answer(const claimed_record& record, const ehr_answer& answer) {
  const std::int64_t now = now_();
  const delivery_verdict verdict = policy_.judge(answer.outcome, record.attempts);
  const bool answered = answer.outcome.what == attempt_outcome::kind::response;
  store_.note_ehr_contact(answered, answered ? "HTTP " + std::to_string(answer.outcome.http_status) : answer.error, now);
  std::string error = answer.error.empty() ? verdict.reason : answer.error + ": " + verdict.reason;
  using result = attempt_report::result;
  switch (verdict.decision) {
    case delivery_decision::delivered:
      ++report_.delivered;
      store_.settle(record, {result::delivered, 0, "", what_the_ehr_made(answer.body)}, now);
      break;
    case delivery_decision::retry:
      ++report_.retries_scheduled;
      report_.last_error = error;
      store_.settle(record, {result::retry, now + verdict.retry_in.count(), error, ""}, now);
      if (answer.outcome.what != attempt_outcome::kind::response) {
        report_.ehr_unreachable = true;
        stop_claiming_ = true;  // the EHR is down: do not hammer it with every lane
      }
      break;
    case delivery_decision::dead:
      ++report_.dead;
      report_.last_error = error;
      store_.settle(record, {result::dead, 0, error, answer.body}, now);
      break;
    case delivery_decision::pause_for_auth:
      report_.auth_fault = true;
      report_.last_error = error;
      stop_claiming_ = true;
      store_.settle(record, {result::released, now + auth_pause_ms, error, ""}, now);
      break;
  }
  pump();
}

}  // namespace connector
