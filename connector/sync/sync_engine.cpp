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
// Only that: an answer that is not a transaction-response is not kept (it may echo the record).
std::string what_the_ehr_made(const std::string& body) {
  const auto responses = fhir::read_transaction_response(body);
  if (!responses) return "[\"accepted; the answer was not a transaction-response\"]";
  fhir::json_writer out;
  out.begin_array();
  for (const auto& r : *responses) out.string(r.location.empty() ? r.status : r.status + " " + r.location);
  out.end_array();
  return std::string(out.view());
}

}  // namespace

sync_engine::sync_engine(boost::asio::io_context& io, outbox& store, ehr_client& ehr,
                         const mappings::bundle_mapper& mapper, const mappings::code_tables& tables,
                         delivery_policy policy, event_sink& events, clock_ms now)
    : io_(io), store_(store), ehr_(ehr), mapper_(mapper), tables_(tables), policy_(std::move(policy)),
      events_(events), now_(std::move(now)) {}

sync_event sync_engine::event_of(const claimed_record& record, std::string_view name,
                                 const std::string& record_type) const {
  sync_event e;
  e.time_ms = now_();
  e.name = name;
  e.record_id = record.record_id;
  e.record_type = record_type;
  e.revision = record.revision;
  e.attempt = record.attempts;
  e.patient = record.patient_key;
  return e;
}

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
    const std::string reason = "no longer valid against the code tables";
    store_.settle(record, {attempt_report::result::dead, 0, reason, ""}, now);
    auto e = event_of(record, event::dead_lettered, "");
    e.detail = reason;
    events_.emit(e);
    return;
  }
  const std::string record_type = read.record->type_name();
  mappings::patient_history history;
  for (const auto& body : store_.delivered_bodies(record.patient_key)) {
    if (auto earlier = mappings::read_record(body, tables_); earlier.record) history.add(std::move(*earlier.record));
  }
  fhir::json_writer bundle;
  const auto outcome = mapper_.map(*read.record, history, bundle);
  if (outcome.result == mappings::mapping_result::waits) {
    ++report_.held;
    const std::string reason = "waits for procedure " + *outcome.waits_for_record;
    store_.settle(record, {attempt_report::result::held, 0, reason, ""}, now);
    auto e = event_of(record, event::held, record_type);
    e.detail = reason;
    events_.emit(e);
    return;
  }
  if (outcome.result == mappings::mapping_result::stale) {
    const std::string reason = "no-op: a newer revision was delivered";
    store_.settle(record, {attempt_report::result::delivered, 0, "", reason}, now);
    auto e = event_of(record, event::delivered, record_type);
    e.detail = reason;
    events_.emit(e);
    return;
  }
  if (!outcome.flags.empty()) {
    auto e = event_of(record, event::flagged, record_type);
    for (const auto& flag : outcome.flags) e.detail += (e.detail.empty() ? "" : ", ") + std::string(flag.rule);
    events_.emit(e);
  }
  attempt sent{record, record_type,
               record.record_id + "/r" + std::to_string(record.revision) + "/a" + std::to_string(record.attempts)};
  auto e = event_of(record, event::sent, record_type);
  e.correlation_id = sent.correlation_id;
  events_.emit(e);
  ehr_.post_transaction(std::string(bundle.view()), sent.correlation_id,
                        [this, sent](ehr_answer answer) { on_answer(sent, answer); });
}

void sync_engine::on_answer(const attempt& sent, const ehr_answer& answer) {
  const claimed_record& record = sent.record;
  const std::int64_t now = now_();
  const delivery_verdict verdict = policy_.judge(answer.outcome, record.attempts);
  const bool answered = answer.outcome.what == attempt_outcome::kind::response;
  store_.note_ehr_contact(answered, answered ? "HTTP " + std::to_string(answer.outcome.http_status) : answer.error, now);
  std::string error = answer.error.empty() ? verdict.reason : answer.error + ": " + verdict.reason;
  const std::string ehr_error = answered ? fhir::summarize_operation_outcome(answer.body) : "";
  auto e = event_of(record, event::delivered, sent.record_type);
  e.correlation_id = sent.correlation_id;
  e.http_status = answered ? answer.outcome.http_status : 0;
  e.latency_ms = answer.latency.count();
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
      if (!answered) {
        report_.ehr_unreachable = true;
        stop_claiming_ = true;  // the EHR is down: do not hammer it with every lane
      }
      e.name = answer.tls_failure ? event::tls_fault : event::retry_scheduled;
      e.detail = error + " in " + std::to_string(verdict.retry_in.count() / 1000) + " s";
      break;
    case delivery_decision::dead:
      ++report_.dead;
      if (!ehr_error.empty()) error += ": " + ehr_error;
      report_.last_error = error;
      store_.settle(record, {result::dead, 0, error, answer.body}, now);
      e.name = event::dead_lettered;
      e.detail = error;
      break;
    case delivery_decision::pause_for_auth:
      report_.auth_fault = true;
      report_.last_error = error;
      stop_claiming_ = true;
      store_.settle(record, {result::released, now + auth_pause_ms, error, ""}, now);
      e.name = event::auth_fault;
      e.detail = error;
      break;
  }
  e.ehr_error = ehr_error;
  events_.emit(e);
  pump();
}

}  // namespace connector
