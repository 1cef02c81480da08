// The delivery pump.
#include "connector/sync/sync_engine.h"

#include <algorithm>
#include <cstdio>

#include "connector/failpoint.h"
#include "connector/observe/sync_log.h"
#include "fhir/json_writer.h"
#include "fhir/transaction_response.h"
#include "mappings/record_reader.h"

namespace connector {

namespace {

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

// The same for a plan written outside a transaction: each write's answer, and what was left out.
std::string what_a_plan_made(const plan_result& plan) {
  fhir::json_writer out;
  out.begin_array();
  for (const auto& m : plan.made) out.string(m);
  for (const auto& l : plan.left_out) out.string("left out: " + l);
  for (const auto& t : plan.possibly_twice) out.string("possibly twice at the EHR: " + t + " (sent again after a lost answer)");
  out.end_array();
  return std::string(out.view());
}

// For the sync log: requests used, and what the EHR did not take (types and reasons, no data).
std::string plan_summary(const plan_result& plan) {
  std::string s = std::to_string(plan.requests) + " requests";
  // The same reason once, with how often: "MedicationAdministration: ... (x13)".
  std::vector<std::pair<std::string, int>> reasons;
  for (const auto& l : plan.left_out) {
    auto it = std::find_if(reasons.begin(), reasons.end(), [&](const auto& r) { return r.first == l; });
    if (it == reasons.end()) {
      reasons.emplace_back(l, 1);
    } else {
      ++it->second;
    }
  }
  for (std::size_t i = 0; i < reasons.size(); ++i) {
    s += (i == 0 ? "; left out: " : "; ") + reasons[i].first;
    if (reasons[i].second > 1) s += " (x" + std::to_string(reasons[i].second) + ")";
  }
  for (const auto& t : plan.possibly_twice) s += "; possibly twice at the EHR: " + t;
  return s;
}

// How long a record waits for its patient (or practitioner) to appear at the EHR between looks
// (at most sync.max_delay_ms).
constexpr std::int64_t party_wait_ms = 30000;

}  // namespace

sync_engine::sync_engine(boost::asio::io_context& loop, store_worker& store, ehr_channel& ehr,
                         const mappings::mapping_source& mappings, delivery_policy policy, event_sink& events,
                         clock_ms wall, engine_settings settings)
    : loop_(loop), store_(store), ehr_(ehr), mappings_(mappings), policy_(std::move(policy)),
      events_(events), wall_(std::move(wall)), settings_(settings), poll_timer_(loop), sweep_timer_(loop),
      renew_timer_(loop), store_timer_(loop) {}

std::int64_t sync_engine::steady_now() const { return steady_ms(); }

// Events never stop delivery: a sink that throws (a bug, memory) costs the line, not the record.
void sync_engine::emit(const sync_event& e) {
  try {
    events_.emit(e);
  } catch (const std::exception& ex) {
    std::fprintf(stderr, "migraine-connector: an event could not be written: %s\n", ex.what());
  }
}

sync_event sync_engine::event_of(const claimed_record& record, std::string_view name,
                                 const std::string& record_type) const {
  sync_event e;
  e.time_ms = wall_();
  e.name = name;
  e.record_id = record.record_id;
  e.record_type = record_type;
  e.revision = record.revision;
  e.attempt = record.attempts;
  e.patient = record.patient_key;
  if (record.received_at_ms > 0) e.received_at_ms = record.received_at_ms;
  return e;
}

void sync_engine::arm(boost::asio::steady_timer& timer, std::chrono::milliseconds in, void (sync_engine::*then)()) {
  timer.expires_after(in);
  timer.async_wait([this, then](const boost::system::error_code& ec) {
    if (!ec) (this->*then)();
  });
}

void sync_engine::start(std::int64_t owner, std::function<void()> on_idle) {
  owner_ = owner;
  on_idle_ = std::move(on_idle);
  started_ = true;
  sweep();  // first take back what dead processes left in flight, then pump
  arm(renew_timer_, settings_.lease / 3, &sync_engine::renew);
}

int sync_engine::waiting_for_party() const {
  const std::int64_t now = steady_now();
  return static_cast<int>(std::count_if(waiting_for_party_.begin(), waiting_for_party_.end(),
                                        [now](const auto& w) { return now - w.second < 120000; }));
}

void sync_engine::use_write_setup(std::shared_ptr<const write_setup> setup) {
  if (setup != nullptr) {
    // For `status`, which reads the store: the mode, why, and what is left out.
    const auto& w = setup->strategy;
    std::string line = std::string(name_of(w.mode)) + " (" + w.why + ")";
    std::string left;
    for (const auto& t : w.types) {
      if (!t.sent) left += (left.empty() ? "" : ", ") + t.type;
    }
    line += left.empty() ? "; every type sent" : "; left out: " + left;
    if (!write_setup_ || write_setup_->strategy.mode != w.mode || line != strategy_line_) {
      strategy_line_ = line;
      const std::int64_t at = wall_();
      store_.run([line = line + ", read " + utc_text(at)](outbox& s) { s.note_write_strategy(line); },
                 [](store_result<bool>) {});
    }
  }
  write_setup_ = std::move(setup);
  wake();
}

void sync_engine::wake() {
  nothing_claimable_ = false;
  poll_timer_.cancel();
  boost::asio::post(loop_, [this] { pump(); });
}

// Claims as many lane heads as there are free connections, one claim job at a time.
void sync_engine::pump(bool force) {
  if (!started_ || finished_ || stopping_ || claiming_ || claims_stopped_) return maybe_finish();
  if (degraded_ && !force) return;  // the store timer probes the store
  if (reading_setup_) return;  // the EHR's capabilities first; the answer pumps again
  const std::int64_t now = steady_now();
  if (now < pause_until_) {  // the EHR is backed off as a whole
    arm(poll_timer_, std::chrono::milliseconds(pause_until_ - now), &sync_engine::poll);
    return;
  }
  const int room = ehr_.free_connections();
  if (room <= 0) return;  // an answer frees a connection and pumps again
  claiming_ = true;
  const std::int64_t asked_at = now;
  const std::int64_t owner = owner_;
  const std::int64_t lease = settings_.lease.count();
  auto wall = wall_;
  auto set = mappings_.current();
  auto setup = needs_write_setup() ? write_setup_ : nullptr;
  // On the worker: claim, then read each record and its patient's history and map it.
  store_.run(
      [owner, lease, room, wall, set, setup](outbox& s) {
        const auto& tables = set->tables();
        const auto& mapper = set->mapper();
        std::vector<prepared> out;
        auto claims = s.claim(owner, wall(), lease, room);
        if (!claims.empty()) failpoint("after_claim_commit");
        for (auto& c : claims) {
          prepared p;
          p.claim = std::move(c);
          p.had_setup = setup != nullptr;
          try {
            auto read = mappings::read_record(p.claim.body, tables);
            if (!read.record) {  // valid at ingest; only a code-table change can make it invalid now
              p.what = prepared::kind::invalid;
              p.detail = "no longer valid against the code tables";
              out.push_back(std::move(p));
              continue;
            }
            p.record_type = read.record->type_name();
            mappings::patient_history history;
            for (const auto& body : s.history(p.claim.patient_key, p.claim.seq)) {
              if (auto earlier = mappings::read_record(body, tables); earlier.record) {
                history.add(std::move(*earlier.record));
              }
            }
            fhir::json_writer bundle;
            auto outcome = mapper.map(*read.record, history, bundle);
            if (outcome.result == mappings::mapping_result::waits) {
              p.what = prepared::kind::held;
              p.detail = "waits for procedure " + *outcome.waits_for_record;
            } else if (outcome.result == mappings::mapping_result::stale) {
              p.what = prepared::kind::stale;
            } else {
              p.bundle = std::string(bundle.view());
              p.flags = std::move(outcome.flags);
              if (setup != nullptr && setup->strategy.mode != write_mode::transaction) {
                // Outside a transaction the plan goes write by write: read it back, with its ledger.
                std::string error;
                p.plan = fhir::read_plan(p.bundle, error);
                if (!p.plan) throw std::runtime_error(error);
                add_folded_note(*p.plan, setup->strategy, setup->left_out, mapper, *read.record, setup->note);
                fhir::order_by_dependency(*p.plan);
                p.ledger = s.ledger_lookup(plan_delivery::keys_of(*p.plan));
                p.setup = setup;
              }
            }
          } catch (const std::exception& e) {
            p.what = prepared::kind::failed;  // the loop lets go of the claim
            p.detail = e.what();
          }
          out.push_back(std::move(p));
        }
        return out;
      },
      [this, asked_at](store_result<std::vector<prepared>> r) { on_claimed(std::move(r), asked_at); });
}

void sync_engine::on_claimed(store_result<std::vector<prepared>> result, std::int64_t asked_at) {
  claiming_ = false;
  if (!result.ok()) {
    store_failed(*result.error);
    return maybe_finish();
  }
  store_succeeded();
  auto& batch = *result.value;
  nothing_claimable_ = batch.empty();
  for (auto& p : batch) {
    const flight_key seq = key_of(p.claim);
    // The same record claimed anew: an older flight of it was taken back from this process (its
    // lease looked run out). Its request must not go out, and its answer counts for nothing.
    for (auto& [k, older] : flights_) {
      if (k.first == seq.first && k.second < seq.second) older.lost = true;
    }
    flight& f = flights_[seq];
    f.claim = std::move(p.claim);
    f.record_type = p.record_type;
    f.correlation_id = f.claim.record_id + "/r" + std::to_string(f.claim.revision) + "/a" +
                       std::to_string(f.claim.attempts);
    // The lease as this process counts it, from before the claim was asked for, less a margin:
    // past it, another process may already have taken the record over.
    f.lease_deadline = asked_at + settings_.lease.count() - settings_.lease.count() / 6;
    using result_kind = attempt_report::result;
    try {
      if (stopping_) {
        release(seq, "not sent: the connector is stopping", 0);
        continue;
      }
      switch (p.what) {
        case prepared::kind::invalid: {
          auto e = event_of(f.claim, event::dead_lettered, "");
          e.detail = p.detail;
          settle(seq, {result_kind::dead, 0, p.detail, "", false, std::nullopt}, e);
          break;
        }
        case prepared::kind::held: {
          auto e = event_of(f.claim, event::held, f.record_type);
          e.detail = p.detail;
          settle(seq, {result_kind::held, 0, p.detail, "", false, std::nullopt}, e);
          break;
        }
        case prepared::kind::stale: {
          const std::string reason = "no-op: a newer revision was delivered";
          auto e = event_of(f.claim, event::delivered, f.record_type);
          e.detail = reason;
          settle(seq, {result_kind::delivered, 0, "", reason, false, std::nullopt}, e);
          break;
        }
        case prepared::kind::failed: {
          // A local failure (reading the history, mapping): not the EHR's, and not worth a tight
          // loop. Retried with backoff like a failed attempt; a record that keeps failing becomes
          // a dead letter, so it never blocks its lane for good.
          const std::string reason = "could not prepare the record: " + p.detail;
          const bool give_up = f.claim.attempts >= policy_.settings().max_attempts;
          auto e = event_of(f.claim, give_up ? event::dead_lettered : event::retry_scheduled, f.record_type);
          e.detail = reason;
          const std::int64_t delay = policy_.backoff(f.claim.attempts, std::nullopt).count();
          settle(seq, {give_up ? result_kind::dead : result_kind::retry, wall_() + delay, reason, "", false, std::nullopt},
                 e);
          break;
        }
        case prepared::kind::send:
          if (!p.flags.empty()) {
            auto e = event_of(f.claim, event::flagged, f.record_type);
            for (const auto& flag : p.flags) e.detail += (e.detail.empty() ? "" : ", ") + std::string(flag.rule);
            emit(e);
          }
          if (needs_write_setup() && !p.had_setup) {
            // Prepared before a strategy was known: read one (or, if one came meanwhile, prepare
            // the record again for it). Not an attempt either way.
            if (write_setup_ != nullptr || reading_setup_) {
              release(seq, "prepared again for the EHR's write strategy", 0);
            } else {
              read_write_setup(seq);
            }
          } else if (p.plan) {
            send_plan(f, p);
          } else {
            send(f, p.bundle);
          }
          break;
      }
    } catch (const std::exception& e) {
      release(seq, std::string("internal error: ") + e.what(), policy_.settings().base_delay.count());
    }
  }
  if (!batch.empty()) pump();
  if (batch.empty() && !settings_.until_idle && !stopping_) {
    arm(poll_timer_, settings_.poll, &sync_engine::poll);
  }
  maybe_finish();
}

// Right before a request is written: the claim must still be this process's by both clocks.
// The steady one catches a process that was frozen; the wall one, the store's view of the lease
// (a wall clock that jumped ahead may have let another process take the record).
bool sync_engine::may_send(const flight_key& key) const {
  const auto it = flights_.find(key);
  if (it == flights_.end() || it->second.lost) return false;
  const flight& f = it->second;
  const std::int64_t margin = settings_.lease.count() / 6;
  return steady_now() < f.lease_deadline && wall_() < f.claim.lease_until_ms - margin;
}

void sync_engine::send(flight& f, const std::string& bundle) {
  const flight_key seq = key_of(f.claim);
  auto e = event_of(f.claim, event::sent, f.record_type);
  e.correlation_id = f.correlation_id;
  emit(e);
  ehr_request request{.path = "", .content_type = "application/fhir+json", .body = bundle,
                      .request_id = f.correlation_id, .may_send = [this, seq] { return may_send(seq); }, .accept = {}, .authorization = {}, .method = {}, .headers = {}};
  const bool taken = ehr_.send(std::move(request), [this, seq](ehr_answer answer) {
    try {
      on_answer(seq, answer);
    } catch (const std::exception& ex) {
      release(seq, std::string("internal error: ") + ex.what(), policy_.settings().base_delay.count());
    }
  });
  if (!taken) release(seq, "not sent: no free connection", policy_.settings().base_delay.count());
}

void sync_engine::read_write_setup(const flight_key& seq) {
  reading_setup_ = true;
  ehr_request request = metadata_request(flights_.at(seq).correlation_id + "/metadata");
  request.may_send = [this, seq] { return may_send(seq); };
  const bool taken = ehr_.send(std::move(request), [this, seq](ehr_answer answer) {
    reading_setup_ = false;
    try {
      std::string error;
      const auto capabilities = capabilities_of(answer, error);
      if (!capabilities) {
        // Judged as this record's attempt, so an outage backs off, a TLS fault is one, and 401/403
        // pause delivery as ever. Nothing of the record went out: its outcome is known.
        answer.outcome.request_sent = false;
        const int status = answer.outcome.http_status;
        const bool answered = answer.outcome.what == attempt_outcome::kind::response;
        if (answered && status != 401 && status != 403 && !retryable_status(status)) {
          // Any other answer (a 200 that is no CapabilityStatement, a 204 from a proxy, a 404): the
          // EHR's fault, never the record's: retried with backoff, never delivered or dead.
          answer.outcome.http_status = 502;
          answer.error = error;
        }
        return on_answer(seq, answer);
      }
      last_answer_ = steady_now();
      auto strategy = choose_strategy(*capabilities, settings_.mode, settings_.parties);
      if (!strategy.deliverable) {
        // Nothing can be sent this way: wait, as for a refused write, and read again.
        const std::int64_t wait = std::min<std::int64_t>(1000LL << std::min(refusal_streak_++, 20), settings_.auth_pause.count());
        pause_until_ = std::max(pause_until_, steady_now() + wait);
        report_.write_refused = true;
        if (settings_.until_idle) claims_stopped_ = true;
        report_.last_error = "cannot deliver to this EHR: " + strategy.not_deliverable_because;
        return release(seq, *report_.last_error, wait);
      }
      use_write_setup(
          std::make_shared<const write_setup>(write_setup{std::move(strategy), settings_.parties, settings_.left_out, settings_.note}));
      release(seq, "prepared again for the EHR's write strategy", 0);
    } catch (const std::exception& ex) {
      release(seq, std::string("internal error: ") + ex.what(), policy_.settings().base_delay.count());
    }
  });
  if (!taken) {
    reading_setup_ = false;
    release(seq, "not sent: no free connection", policy_.settings().base_delay.count());
  }
}

// Outside a transaction: the plan's writes one request (or one batch) at a time.
void sync_engine::send_plan(flight& f, prepared& p) {
  const flight_key seq = key_of(f.claim);
  auto e = event_of(f.claim, event::sent, f.record_type);
  e.correlation_id = f.correlation_id;
  e.detail = std::string("write mode ") + std::string(name_of(p.setup->strategy.mode)) + ", " +
             std::to_string(p.plan->writes.size()) + " resources";
  emit(e);
  plan_delivery::start({loop_, ehr_, store_, wall_, shared_keys_}, p.setup, f.claim, std::move(*p.plan), std::move(p.ledger),
                       [this, seq] { return may_send(seq); }, f.correlation_id, [this, seq](plan_result r) {
                         try {
                           on_plan_done(seq, std::move(r));
                         } catch (const std::exception& ex) {
                           release(seq, std::string("internal error: ") + ex.what(), policy_.settings().base_delay.count());
                         }
                       });
}

void sync_engine::on_plan_done(const flight_key& seq, plan_result r) {
  const auto it = flights_.find(seq);
  if (it == flights_.end()) return;
  flight& f = it->second;
  using ending = plan_result::ending;
  using result_kind = attempt_report::result;
  switch (r.how) {
    case ending::written: {
      ehr_answer ok;
      ok.outcome.what = attempt_outcome::kind::response;
      ok.outcome.http_status = 200;
      return on_answer(seq, ok, &r);
    }
    case ending::failed: return on_answer(seq, r.answer, &r);
    case ending::party_unknown: {
      // Held, not failed: it goes on by itself once the EHR has the patient. Not an attempt.
      auto e = event_of(f.claim, event::held, f.record_type);
      e.correlation_id = f.correlation_id;
      e.detail = r.detail;
      const std::int64_t wait = std::min<std::int64_t>(party_wait_ms, policy_.settings().max_delay.count());
      f.waits_for_party = true;
      return settle(seq, {result_kind::released, wall_() + wait, r.detail, "", false, std::nullopt}, e);
    }
    case ending::party_ambiguous: {
      auto e = event_of(f.claim, event::dead_lettered, f.record_type);
      e.correlation_id = f.correlation_id;
      e.detail = r.detail;
      return settle(seq, {result_kind::dead, 0, r.detail, "", false, std::nullopt}, e);
    }
    case ending::store_failed:
      return release(seq, "the ledger could not be written: " + r.detail, policy_.settings().base_delay.count());
    case ending::lost:
      f.lost = true;
      return release(seq, "the claim was taken over", 0);
  }
}

void sync_engine::on_answer(const flight_key& seq, const ehr_answer& answer, const plan_result* plan) {
  failpoint("after_answer");  // the EHR has answered; nothing of it is recorded yet
  const auto it = flights_.find(seq);
  if (it == flights_.end()) return;
  flight& f = it->second;
  const claimed_record& record = f.claim;
  const std::int64_t now = wall_();
  const std::int64_t steady = steady_now();
  const bool answered = answer.outcome.what == attempt_outcome::kind::response;
  const bool withheld = answer.outcome.what == attempt_outcome::kind::withheld;
  // The EHR's token endpoint answered, refusing: the EHR is reachable, the credentials are not good.
  const bool token_refused = answer.outcome.what == attempt_outcome::kind::credentials_refused;
  const std::string ehr_error = answered ? fhir::summarize_operation_outcome(answer.body) : "";
  attempt_outcome outcome = answer.outcome;
  // The summary keeps FHIR's issue-type codes: "error not-supported at Bundle.type".
  outcome.not_supported = answered && (" " + ehr_error).find(" not-supported") != std::string::npos;
  const delivery_verdict verdict = policy_.judge(outcome, record.attempts);
  std::string error = answer.error.empty() ? verdict.reason : answer.error + ": " + verdict.reason;

  attempt_report report;
  report.maybe_at_ehr = outcome_unknown(answer.outcome);
  if (!withheld) {
    report.contact = ehr_contact{answered || token_refused,
                                 answered ? "HTTP " + std::to_string(answer.outcome.http_status) : answer.error};
  }
  auto e = event_of(record, event::delivered, f.record_type);
  e.correlation_id = f.correlation_id;
  e.http_status = answered ? answer.outcome.http_status : 0;
  e.latency_ms = answer.latency.count();
  e.ehr_error = ehr_error;

  // The EHR as a whole: answered, down, or refusing the connector's credentials.
  if (answered && verdict.decision != delivery_decision::pause_for_auth) auth_streak_ = 0;
  if (answered && verdict.decision != delivery_decision::pause_for_write_mode) refusal_streak_ = 0;
  if (answered || token_refused) {
    last_answer_ = steady;
    unreachable_streak_ = 0;
  } else if (!withheld && !answer.closed_on_reuse) {  // an idle connection's close is not an outage
    report_.ehr_unreachable = true;
    ++unreachable_streak_;
    // From one second, doubling, up to sync.max_delay_ms: the EHR, not one record, is failing.
    const std::int64_t wait = std::min<std::int64_t>(1000LL << std::min(unreachable_streak_ - 1, 20),
                                                     policy_.settings().max_delay.count());
    if (steady + wait > pause_until_) {
      pause_until_ = steady + wait;
      if (!settings_.until_idle) {
        std::fprintf(stderr, "migraine-connector: EHR unreachable (%s); next try in %lld ms\n", answer.error.c_str(),
                     static_cast<long long>(wait));
      }
    }
    if (settings_.until_idle) claims_stopped_ = true;
  }

  using result = attempt_report::result;
  switch (verdict.decision) {
    case delivery_decision::delivered:
      report.what = result::delivered;
      report.ehr_response = plan != nullptr ? what_a_plan_made(*plan) : what_the_ehr_made(answer.body);
      if (plan != nullptr) e.detail = plan_summary(*plan);
      break;
    case delivery_decision::retry:
      report.what = result::retry;
      report.retry_at_ms = now + verdict.retry_in.count();
      report.error = error;
      e.name = answer.tls_failure ? event::tls_fault : event::retry_scheduled;
      e.detail = error + " in " + std::to_string(verdict.retry_in.count() / 1000) + " s";
      break;
    case delivery_decision::dead:
      if (!ehr_error.empty()) error += ": " + ehr_error;
      report.what = result::dead;
      report.error = error;
      report.ehr_response = answer.body;
      e.name = event::dead_lettered;
      e.detail = error;
      break;
    case delivery_decision::pause_for_auth: {
      // Asked again after 1 s, doubling up to engine_settings.auth_pause: a registration fixed at
      // the EHR is picked up by itself, and a refusing EHR is asked about once a minute.
      const std::int64_t wait = std::min<std::int64_t>(1000LL << std::min(auth_streak_++, 20), settings_.auth_pause.count());
      report_.auth_fault = true;
      pause_until_ = std::max(pause_until_, steady + wait);
      if (settings_.until_idle) claims_stopped_ = true;
      report.what = result::released;
      report.retry_at_ms = now + wait;
      report.error = error;
      e.name = event::auth_fault;
      e.detail = error;
      break;
    }
    case delivery_decision::pause_for_write_mode: {
      // The same pause as for credentials: the EHR as a whole refuses this way of writing (its
      // capabilities changed, or ehr.write_mode asks for what it does not take). The record goes
      // back to its lane, not counted as an attempt, and nothing becomes a dead letter.
      const std::int64_t wait =
          std::min<std::int64_t>(1000LL << std::min(refusal_streak_++, 20), settings_.auth_pause.count());
      report_.write_refused = true;
      pause_until_ = std::max(pause_until_, steady + wait);
      if (settings_.until_idle) claims_stopped_ = true;
      if (needs_write_setup()) write_setup_ = nullptr;  // what the EHR takes is read again first
      report.what = result::released;
      report.retry_at_ms = now + wait;
      if (!ehr_error.empty()) error += ": " + ehr_error;
      report.error = error;
      e.name = event::write_refused;
      e.detail = error;
      break;
    }
    case delivery_decision::released:
      return release(seq, verdict.reason, 0);
  }
  if (report.maybe_at_ehr && report.what != result::delivered) {
    e.detail += e.detail.empty() ? "outcome unknown: possibly at the EHR" : "; outcome unknown: possibly at the EHR";
  }
  if (report.what != result::delivered) report_.last_error = error;
  settle(seq, std::move(report), std::move(e));
}

// Not attempted after all: back to its lane, ready again after `ready_in_ms`.
void sync_engine::release(const flight_key& seq, const std::string& why, std::int64_t ready_in_ms) {
  const auto it = flights_.find(seq);
  if (it == flights_.end()) return;
  attempt_report report;
  report.what = attempt_report::result::released;
  report.retry_at_ms = wall_() + ready_in_ms;
  report.error = why;
  settle(seq, std::move(report), sync_event{});  // nothing to log: the record is simply back in line
}

void sync_engine::settle(const flight_key& seq, attempt_report report, sync_event event) {
  flight& f = flights_.at(seq);
  f.at = flight::stage::settling;
  f.report = std::move(report);
  f.event = std::move(event);
  const claimed_record claim = f.claim;
  const attempt_report r = f.report;
  auto wall = wall_;
  store_.run(
      [claim, r, wall](outbox& s) {
        const bool settled = s.settle(claim, r, wall());
        failpoint("after_settle_commit");
        return settled;
      },
             [this, seq](store_result<bool> result) { on_settled(seq, result); });
}

void sync_engine::on_settled(const flight_key& seq, const store_result<bool>& result) {
  const auto it = flights_.find(seq);
  if (it == flights_.end()) return;
  flight& f = it->second;
  if (!result.ok()) {
    // Kept in memory and tried again: the EHR's answer must reach the store, or the record would
    // stay in flight. Meanwhile no new claims (see store_failed).
    f.at = flight::stage::unsettled;
    store_failed(*result.error);
    return;
  }
  const flight done = std::move(f);
  flights_.erase(it);
  store_succeeded();
  if (done.waits_for_party && *result.value) {
    waiting_for_party_[done.claim.seq] = steady_now();
  } else if (done.report.what != attempt_report::result::released || done.event.name == event::delivered) {
    waiting_for_party_.erase(done.claim.seq);  // delivered, dead, retried: no longer waiting for its patient
  }
  using result_kind = attempt_report::result;
  if (!*result.value) {
    ++report_.claims_lost;
    auto e = event_of(done.claim, event::claim_lost, done.record_type);
    e.correlation_id = done.correlation_id;
    e.detail = "another process took this claim over; this answer is not recorded";
    emit(e);
  } else {
    switch (done.report.what) {
      case result_kind::delivered: ++report_.delivered; break;
      case result_kind::retry: ++report_.retries_scheduled; break;
      case result_kind::dead: ++report_.dead; break;
      case result_kind::held: ++report_.held; break;
      case result_kind::released: break;
    }
    if (!done.event.name.empty()) emit(done.event);
  }
  pump();
  maybe_finish();
}

void sync_engine::store_failed(const store_error& e) {
  if (finished_) return;  // a late answer of a job from before the end
  if (!degraded_) {
    degraded_ = true;
    degraded_since_ = steady_now();
    store_problem_ = std::string("store ") + std::string(to_string(e.failure)) + ": " + e.what();
    sync_event ev;
    ev.time_ms = wall_();
    ev.name = event::store_degraded;
    ev.detail = store_problem_ + "; delivery takes no new record until it can write again";
    emit(ev);
    store_backoff_ = std::min(std::chrono::milliseconds(100), settings_.store_retry_max);
  }
  arm(store_timer_, store_backoff_, &sync_engine::retry_store);
  store_backoff_ = std::min(store_backoff_ * 2, settings_.store_retry_max);
}

void sync_engine::store_succeeded() {
  if (degraded_) {
    degraded_ = false;
    sync_event ev;
    ev.time_ms = wall_();
    ev.name = event::store_restored;
    ev.detail = "the store takes writes again after " + std::to_string((steady_now() - degraded_since_) / 1000) +
                " s; delivery goes on";
    emit(ev);
    store_problem_.clear();
  }
  // Answers still waiting to be recorded go now that the store takes writes.
  bool waiting = false;
  for (auto& [seq, f] : flights_) {
    if (f.at != flight::stage::unsettled) continue;
    waiting = true;
    settle(seq, f.report, f.event);
  }
  if (!waiting) store_timer_.cancel();
}

// While degraded: the unsettled answers first; with none, a claim probes the store.
void sync_engine::retry_store() {
  const bool give_up = (settings_.until_idle && steady_now() - degraded_since_ >= settings_.give_up_on_store.count()) ||
                       (stopping_ && steady_now() >= stop_deadline_);
  if (give_up) {
    // Left in flight in the store: when this process exits, the next one takes them back.
    report_.store_error = store_problem_;
    for (auto it = flights_.begin(); it != flights_.end();) {
      it = it->second.at == flight::stage::unsettled ? flights_.erase(it) : std::next(it);
    }
    claims_stopped_ = true;
    return maybe_finish();
  }
  bool any = false;
  for (auto& [seq, f] : flights_) {
    if (f.at != flight::stage::unsettled) continue;
    any = true;
    settle(seq, f.report, f.event);
  }
  if (!any) pump(true);
}

void sync_engine::sweep() {
  if (finished_) return;
  auto wall = wall_;
  // A lease or due time further ahead than the longest wait the connector sets: the clock stepped back.
  const std::int64_t horizon = std::max(settings_.lease, policy_.settings().max_delay).count() +
                               settings_.auth_pause.count() + 60000;
  std::vector<claimed_record> holding;
  for (const auto& [key, f] : flights_) holding.push_back(f.claim);
  store_.run(
      [wall, horizon, holding](outbox& s) {
        auto taken = s.take_over(wall(), horizon, holding);
        if (!taken.empty()) failpoint("after_take_over_commit");
        return taken;
      },
             [this](store_result<std::vector<recovered_claim>> r) {
               if (!r.ok()) {
                 store_failed(*r.error);
               } else {
                 for (const auto& c : *r.value) {
                   ++report_.claims_recovered;
                   sync_event e;
                   e.time_ms = wall_();
                   e.name = event::claim_recovered;
                   e.record_id = c.record_id;
                   e.revision = c.revision;
                   e.patient = c.patient_key;
                   e.detail = "taken back from " + c.holder + "; possibly at the EHR";
                   emit(e);
                 }
                 if (!r.value->empty()) nothing_claimable_ = false;
               }
               if (!stopping_ && !finished_) {
                 if (!settings_.until_idle) arm(sweep_timer_, settings_.sweep, &sync_engine::sweep);
                 pump();
               }
               maybe_finish();
             });
}

// The heartbeat: extends the leases of the requests this process has out.
void sync_engine::renew() {
  if (finished_) return;
  // Every claim still held, whatever its stage: an answer waiting for a busy store to record it
  // must not lose its claim meanwhile.
  std::vector<claimed_record> claims;
  for (const auto& [seq, f] : flights_) {
    if (!f.lost) claims.push_back(f.claim);
  }
  if (!claims.empty()) {
    const std::int64_t asked_at = steady_now();
    const std::int64_t renewed_at = wall_();  // the store's new lease starts no earlier than this
    const std::int64_t lease = settings_.lease.count();
    store_.run([claims, renewed_at, lease](outbox& s) { return s.renew(claims, renewed_at, lease); },
               [this, claims, asked_at, renewed_at](store_result<std::vector<std::int64_t>> r) {
                 if (!r.ok()) return;  // the old deadlines stand; a request past its lease is withheld
                 for (const auto& c : claims) {
                   const auto it = flights_.find(key_of(c));
                   if (it == flights_.end()) continue;
                   if (std::find(r.value->begin(), r.value->end(), c.seq) != r.value->end()) {
                     it->second.lost = true;
                   } else {
                     it->second.lease_deadline = asked_at + settings_.lease.count() - settings_.lease.count() / 6;
                     it->second.claim.lease_until_ms = renewed_at + settings_.lease.count();
                   }
                 }
               });
  }
  arm(renew_timer_, settings_.lease / 3, &sync_engine::renew);
}

void sync_engine::stop(std::function<void()> done) {
  stopping_ = true;
  on_stopped_ = std::move(done);
  stop_deadline_ = steady_now() + 10000;  // a store refusing writes delays the exit at most 10 s
  poll_timer_.cancel();
  sweep_timer_.cancel();
  maybe_finish();
}

void sync_engine::maybe_finish() {
  if (finished_ || !started_ || claiming_ || !flights_.empty()) return;
  const bool idle = settings_.until_idle && (nothing_claimable_ || claims_stopped_);
  if (!stopping_ && !idle) return;
  finished_ = true;
  poll_timer_.cancel();
  sweep_timer_.cancel();
  renew_timer_.cancel();
  store_timer_.cancel();
  if (stopping_ && on_stopped_) {
    auto done = std::move(on_stopped_);
    done();
  } else if (on_idle_) {
    auto done = std::move(on_idle_);
    done();
  }
}

}  // namespace connector
