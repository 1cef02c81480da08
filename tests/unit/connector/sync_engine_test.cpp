// The sync engine against a fake EHR (scripted answers, every outcome) and the real SQLite outbox,
// wrapped so any call can be made to fail: a failure at every step, and the engine must end every
// claim in a settle or a release, never send an older revision after a newer one, and recover by
// itself without a restart.
#include "connector/sync/sync_engine.h"

#include <filesystem>
#include <functional>
#include <map>
#include <random>
#include <thread>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <gtest/gtest.h>

#include "connector/outbox/sqlite_outbox.h"
#include "support/test_support.h"

namespace {

namespace fs = std::filesystem;
namespace asio = boost::asio;
using namespace connector;

// ---- the fake EHR ----

// What the fake does with one request.
enum class act {
  commit,             // 200 with a transaction-response
  refuse_503,         // 503, nothing committed
  refuse_422,         // 422, nothing committed
  refuse_401,         // 401, nothing committed
  refuse_405,         // 405: the EHR takes no transactions
  not_supported,      // 400 with an OperationOutcome saying not-supported
  fail_before_send,   // connection refused: nothing sent
  commit_then_reset,  // committed, then the connection dies: the answer is lost
  time_out,           // sent, no answer, nothing committed
  answer_504,         // a gateway gave up: committed behind it
  withhold,           // the client asked may_send and got no: never sent
  closed_on_reuse,    // a kept-alive connection closed as the request went out: committed, no answer
};

struct committed {
  std::string record_id;
  int revision = 0;
  std::string bundle;
};

class fake_ehr final : public ehr_channel {
 public:
  fake_ehr(asio::io_context& io, int connections) : io_(io), connections_(connections) {}

  // By default every request commits; `script` decides per request number (1, 2, ...).
  std::function<act(int request, const std::string& record_id)> script;
  // Called instead of answering when set: lets a test hold a request "on the wire".
  std::function<bool(int request)> hold;

  int throw_on_send = 0;  // the Nth send throws, as a bug in the client would

  bool send(ehr_request request, std::function<void(ehr_answer)> done) override {
    if (busy_ >= connections_) return false;
    if (throw_on_send > 0 && ++sends_ == throw_on_send) throw std::runtime_error("a bug in the client");
    ++busy_;
    const int n = ++requests_;
    asio::post(io_, [this, n, request = std::move(request), done = std::move(done)]() mutable {
      answer(n, std::move(request), std::move(done));
    });
    return true;
  }
  int free_connections() const override { return connections_ - busy_; }

  const std::vector<committed>& commits() const { return commits_; }
  int requests() const { return requests_; }
  std::vector<std::pair<ehr_request, std::function<void(ehr_answer)>>> held;

  // A held request is one not yet written (connecting, say): released, it is written now, if its
  // sender still may, and answered.
  void release_held(act what) {
    auto h = std::move(held);
    held.clear();
    for (auto& [request, done] : h) reply(request.may_send && !request.may_send() ? act::withhold : what, request, std::move(done));
  }

 private:
  static std::pair<std::string, int> id_of(const std::string& correlation_id) {
    const auto r = correlation_id.find("/r");
    const auto a = correlation_id.find("/a");
    return {correlation_id.substr(0, r), std::stoi(correlation_id.substr(r + 2, a - r - 2))};
  }

  void answer(int n, ehr_request request, std::function<void(ehr_answer)> done) {
    if (hold && hold(n)) {
      held.emplace_back(std::move(request), std::move(done));
      return;
    }
    if (request.may_send && !request.may_send()) return reply(act::withhold, request, std::move(done));
    reply(script ? script(n, id_of(request.request_id).first) : act::commit, request, std::move(done));
  }

  void reply(act what, const ehr_request& request, std::function<void(ehr_answer)> done) {
    --busy_;
    ehr_answer a;
    const auto [record_id, revision] = id_of(request.request_id);
    auto commit = [&] { commits_.push_back({record_id, revision, request.body}); };
    switch (what) {
      case act::withhold:
        a.outcome.what = attempt_outcome::kind::withheld;
        a.error = "not sent";
        break;
      case act::commit:
        commit();
        a.outcome = {attempt_outcome::kind::response, 200, std::nullopt, true};
        a.body = R"({"resourceType":"Bundle","type":"transaction-response","entry":[{"response":{"status":"201 Created","location":"Encounter/1/_history/1"}}]})";
        break;
      case act::refuse_503: a.outcome = {attempt_outcome::kind::response, 503, std::nullopt, true}; break;
      case act::refuse_422:
        a.outcome = {attempt_outcome::kind::response, 422, std::nullopt, true};
        a.body = R"({"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"processing"}]})";
        break;
      case act::refuse_401: a.outcome = {attempt_outcome::kind::response, 401, std::nullopt, true}; break;
      case act::refuse_405: a.outcome = {attempt_outcome::kind::response, 405, std::nullopt, true}; break;
      case act::not_supported:
        a.outcome = {attempt_outcome::kind::response, 400, std::nullopt, true};
        a.body = R"({"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-supported",)"
                 R"("diagnostics":"Transaction bundles are not supported"}]})";
        break;
      case act::fail_before_send:
        a.outcome = {attempt_outcome::kind::connection_failed, 0, std::nullopt, false};
        a.error = "connect: Connection refused";
        break;
      case act::commit_then_reset:
        commit();
        a.outcome = {attempt_outcome::kind::connection_failed, 0, std::nullopt, true};
        a.error = "receive: Connection reset by peer";
        break;
      case act::time_out:
        a.outcome = {attempt_outcome::kind::timed_out, 0, std::nullopt, true};
        a.error = "waiting for the answer timed out";
        break;
      case act::closed_on_reuse:
        commit();
        a.outcome = {attempt_outcome::kind::connection_failed, 0, std::nullopt, true};
        a.error = "receive: end of stream";
        a.closed_on_reuse = true;
        break;
      case act::answer_504:
        commit();
        a.outcome = {attempt_outcome::kind::response, 504, std::nullopt, true};
        break;
    }
    done(a);
  }

  asio::io_context& io_;
  int connections_;
  int busy_ = 0;
  int requests_ = 0;
  int sends_ = 0;
  std::vector<committed> commits_;
};

// ---- an outbox that fails on command ----

// The real SQLite outbox, with the Nth call (any method) failing as a store would: busy, or with an
// outcome unknown after the commit went through. Counts calls so a test can fail each in turn.
class failing_outbox final : public outbox {
 public:
  explicit failing_outbox(outbox& real) : real_(real) {}
  int fail_at = 0;  // 0: never
  bool commit_then_fail = false;  // the failing call's work is done, then it reports failure
  int calls = 0;

  std::vector<enqueue_result> enqueue(const std::vector<inbound_record>& r, const std::vector<quarantined_record>& q,
                                      std::int64_t now, std::string_view id) override {
    return call([&] { return real_.enqueue(r, q, now, id); });
  }
  bool intake_seen(std::string_view id) override { return call([&] { return real_.intake_seen(id); }); }
  std::optional<std::string> patient_key_fingerprint() override { return real_.patient_key_fingerprint(); }
  void record_patient_key_fingerprint(const std::string& f) override { real_.record_patient_key_fingerprint(f); }
  bool holds_records() override { return real_.holds_records(); }
  std::int64_t register_owner(std::string_view kind, std::int64_t now) override { return real_.register_owner(kind, now); }
  void release_owner(std::int64_t owner, std::int64_t now) override { real_.release_owner(owner, now); }
  std::vector<claimed_record> claim(std::int64_t owner, std::int64_t now, std::int64_t lease, int limit) override {
    return call([&] { return real_.claim(owner, now, lease, limit); });
  }
  std::vector<std::int64_t> renew(const std::vector<claimed_record>& c, std::int64_t now, std::int64_t lease) override {
    return call([&] { return real_.renew(c, now, lease); });
  }
  bool settle(const claimed_record& c, const attempt_report& r, std::int64_t now) override {
    return call([&] { return real_.settle(c, r, now); });
  }
  std::vector<recovered_claim> take_over(std::int64_t now, std::int64_t horizon,
                                        const std::vector<claimed_record>& holding) override {
    return call([&] { return real_.take_over(now, horizon, holding); });
  }
  std::vector<std::string> history(const std::string& p, std::int64_t except) override {
    return call([&] { return real_.history(p, except); });
  }
  void note_ehr_contact(const ehr_contact& c, std::int64_t now) override {
    call([&] {
      real_.note_ehr_contact(c, now);
      return 0;
    });
  }
  std::vector<ledger_entry> ledger_lookup(const std::vector<ledger_key>& keys) override {
    return call([&] { return real_.ledger_lookup(keys); });
  }
  bool ledger_record(const claimed_record& c, const ledger_entry& e, std::int64_t now) override {
    return call([&] { return real_.ledger_record(c, e, now); });
  }
  std::vector<ledger_entry> ledger_of_record(const std::string& id) override { return real_.ledger_of_record(id); }
  void note_write_strategy(const std::string& summary) override {
    call([&] {
      real_.note_write_strategy(summary);
      return true;
    });
  }
  outbox_status status(std::int64_t now) override { return real_.status(now); }
  std::vector<dead_letter> replay(const std::string& id, const std::string& reason, const std::string& who, bool dry,
                                  std::int64_t now) override {
    return real_.replay(id, reason, who, dry, now);
  }
  std::vector<record_summary> records_in_state(record_state s, int limit) override { return real_.records_in_state(s, limit); }
  std::vector<record_summary> record_history(const std::string& id) override { return real_.record_history(id); }
  std::vector<quarantine_entry> quarantined(int limit) override { return real_.quarantined(limit); }
  std::optional<std::string> write_problem() override { return real_.write_problem(); }
  std::vector<open_alert> open_alerts() override { return real_.open_alerts(); }
  void set_alert(const open_alert& a, bool open) override { real_.set_alert(a, open); }
  bool lead(std::string_view role, std::int64_t owner, std::int64_t now, std::int64_t lease) override {
    return real_.lead(role, owner, now, lease);
  }
  void note_owner_conditions(std::int64_t owner, const std::vector<open_alert>& c) override {
    real_.note_owner_conditions(owner, c);
  }
  bool hold_intake_file(std::string_view name) override { return real_.hold_intake_file(name); }
  void release_intake_file(std::string_view name) override { real_.release_intake_file(name); }

 private:
  template <typename F>
  auto call(F f) -> decltype(f()) {
    const bool fail = ++calls == fail_at;
    if (fail && !commit_then_fail) throw store_error(store_error::kind::busy, "store test.db: database is locked");
    auto result = f();
    if (fail) throw store_error(store_error::kind::other, "store test.db: disk I/O error", true);
    return result;
  }
  outbox& real_;
};

// ---- events ----

class recording_sink final : public event_sink {
 public:
  void emit(const sync_event& e) override {
    if (throw_at > 0 && ++emitted_ == throw_at) throw std::runtime_error("a faulty event sink");
    names.push_back(std::string(e.name));
    details.push_back(e.detail);
    if (std::getenv("SYNC_ENGINE_TEST_VERBOSE")) std::printf("  event %s %s %s\n", std::string(e.name).c_str(), e.record_id.c_str(), e.detail.c_str());
  }
  bool any_detail(std::string_view text) const {
    return std::any_of(details.begin(), details.end(), [&](const std::string& d) { return d.find(text) != std::string::npos; });
  }
  std::vector<std::string> details;
  int count(std::string_view name) const { return static_cast<int>(std::count(names.begin(), names.end(), name)); }
  std::vector<std::string> names;
  int throw_at = 0;

 private:
  int emitted_ = 0;
};

// ---- records ----

// A patient's pathway: consultation, procedure, follow-up, with ids and MRN made unique.
std::vector<inbound_record> pathway(int patient) {
  const std::string p = std::to_string(patient);
  const std::string mrn = "MRN-T" + p;
  auto edit = [&](std::string_view kind, const std::string& id) {
    return test_support::edited_example(kind, [&](rapidjson::Document& d, auto& a) {
      d["record_id"].SetString(id.c_str(), a);
      d["patient"]["mrn"].SetString(mrn.c_str(), a);
      if (d.HasMember("consultation_record_id")) d["consultation_record_id"].SetString(("C-" + p).c_str(), a);
      if (d.HasMember("procedure_record_id")) d["procedure_record_id"].SetString(("P-" + p).c_str(), a);
    });
  };
  return {{"C-" + p, 1, "consultation", "lane-" + p, edit("consultation", "C-" + p)},
          {"P-" + p, 1, "procedure", "lane-" + p, edit("procedure", "P-" + p)},
          {"F-" + p, 1, "follow_up", "lane-" + p, edit("follow_up", "F-" + p)}};
}

// The procedure of patient `patient` at revision 2, its immediate reaction taken out.
inbound_record procedure_amended(int patient) {
  const std::string p = std::to_string(patient);
  const std::string mrn = "MRN-T" + p;
  return {"P-" + p, 2, "procedure", "lane-" + p,
          test_support::edited_example("procedure", [&](rapidjson::Document& d, auto& a) {
            d["record_id"].SetString(("P-" + p).c_str(), a);
            d["revision"].SetInt(2);
            d["patient"]["mrn"].SetString(mrn.c_str(), a);
            d["consultation_record_id"].SetString(("C-" + p).c_str(), a);
            d.RemoveMember("immediate_reactions");
          })};
}

// ---- the harness ----

std::vector<inbound_record> patients(int n) {
  std::vector<inbound_record> all;
  for (int i = 0; i < n; ++i) {
    for (auto& r : pathway(i)) all.push_back(std::move(r));
  }
  return all;
}

class sync_engine_test : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("sync-engine-test-" + std::to_string(::getpid()) + "-" +
                                        testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    path_ = (dir_ / "outbox.db").string();
    real_ = std::make_unique<sqlite_outbox>(path_, sqlite_options{.full_sync = false, .on_busy = {}});
    store_ = std::make_unique<failing_outbox>(*real_);
    owner_ = real_->register_owner("daemon", now_ms());
  }
  void TearDown() override {
    store_.reset();
    real_.reset();
    fs::remove_all(dir_);
  }

  engine_settings fast(bool until_idle) const {
    engine_settings s;
    s.lease = std::chrono::milliseconds(2000);
    s.poll = std::chrono::milliseconds(2);
    s.sweep = std::chrono::milliseconds(20);
    s.auth_pause = std::chrono::milliseconds(5);
    s.store_retry_max = std::chrono::milliseconds(5);
    s.until_idle = until_idle;
    s.give_up_on_store = std::chrono::milliseconds(200);
    s.mode = mode_;
    return s;
  }
  write_mode mode_ = write_mode::transaction;  // ehr.write_mode: others read /metadata first

  // Runs an engine until nothing can be done now (sync --once). Returns its report.
  sync_report run_until_idle(fake_ehr& ehr, event_sink& events, int max_attempts = 10) {
    store_worker worker(io_, *store_, store_worker::mode::inline_);
    sync_engine engine(io_, worker, ehr, mappings_, policy(max_attempts), events, now_ms,
                       fast(true));
    bool idle = false;
    engine.start(owner_, [&] { idle = true; });
    run_until([&] { return idle; });
    EXPECT_TRUE(idle) << "sync --once did not come to an end";
    return engine.report();
  }

  // Runs a daemon engine until `done` holds in the store, then stops it; it must never need a restart.
  void run_daemon_until(fake_ehr& ehr, event_sink& events, const std::function<bool()>& done) {
    store_worker worker(io_, *store_, store_worker::mode::inline_);
    sync_engine engine(io_, worker, ehr, mappings_, policy(10), events, now_ms,
                       fast(false));
    engine.start(owner_);
    bool stopped = false;
    bool stopping = false;
    run_until([&] {
      if (stopping || (done() && !engine.store_degraded())) {
        if (!stopping) engine.stop([&] { stopped = true; });
        stopping = true;
        return stopped;
      }
      return false;
    });
    EXPECT_TRUE(stopped) << "the daemon engine did not get there by itself";
  }

  // Drives the loop until `done` (checked every millisecond), at most 20 s; then runs what is
  // ready, so nothing queued outlives the engine that queued it.
  void run_until(const std::function<bool()>& done) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    asio::steady_timer tick(io_);
    bool finished = false;
    std::function<void()> check = [&] {
      if (finished) return;
      if (done() || std::chrono::steady_clock::now() > deadline) {
        finished = true;
        return;
      }
      tick.expires_after(std::chrono::milliseconds(1));
      tick.async_wait([&](boost::system::error_code ec) {
        if (!ec) check();
      });
    };
    io_.restart();
    check();
    while (!finished) io_.run_one();
    tick.cancel();
    io_.restart();
    while (io_.poll() > 0) {
    }
  }

  delivery_policy policy(int max_attempts) {
    return delivery_policy({max_attempts, std::chrono::milliseconds(1), std::chrono::milliseconds(4)},
                           [this] { return std::uniform_real_distribution<double>(0.0, 1.0)(random_); });
  }

  std::int64_t count(record_state s) { return real_->status(now_ms()).records.at(s); }
  // The EHR refuses every write as a whole (`refusal`), then takes them again.
  void refusal_pauses_and_dead_letters_nothing(act refusal) {
    real_->enqueue(patients(3), {}, now_ms());
    fake_ehr ehr(io_, 2);
    ehr.script = [refusal](int, const std::string&) { return refusal; };
    recording_sink events;
    const auto report = run_until_idle(ehr, events);
    EXPECT_TRUE(report.write_refused);
    EXPECT_EQ(count(record_state::dead), 0) << "the EHR's capabilities are not the record's fault";
    EXPECT_EQ(count(record_state::in_flight), 0);
    EXPECT_LE(ehr.requests(), 2) << "after the first refusals no more records are tried";
    EXPECT_GE(events.count("write_refused"), 1);
    EXPECT_TRUE(events.any_detail("does not take records written this way"));
    if (refusal == act::not_supported) {
      EXPECT_TRUE(events.any_detail("error not-supported")) << "the EHR's issue type is named";
    }
    // The EHR takes them again (or the connector writes another way): everything goes.
    ehr.script = [](int, const std::string&) { return act::commit; };
    for (int i = 0; i < 5 && !all_delivered(9); ++i) run_until_idle(ehr, events);
    EXPECT_TRUE(all_delivered(9));
  }

  bool all_delivered(std::int64_t n) { return count(record_state::delivered) == n; }

  // Exactly once in effect, in order: each patient's records first reached the EHR in arrival order,
  // and no revision reached it after a newer one of the same record.
  void expect_in_order(const fake_ehr& ehr, const std::vector<inbound_record>& arrival) {
    std::map<std::string, std::vector<std::string>> first_seen;  // lane -> record ids, first commits
    std::map<std::string, int> newest;
    for (const auto& c : ehr.commits()) {
      EXPECT_GE(c.revision, newest[c.record_id]) << c.record_id << " revision " << c.revision << " after a newer one";
      newest[c.record_id] = std::max(newest[c.record_id], c.revision);
      for (const auto& r : arrival) {
        if (r.record_id != c.record_id) continue;
        auto& seen = first_seen[r.patient_key];
        if (std::find(seen.begin(), seen.end(), c.record_id) == seen.end()) seen.push_back(c.record_id);
        break;
      }
    }
    std::map<std::string, std::vector<std::string>> expected;
    for (const auto& r : arrival) {
      auto& e = expected[r.patient_key];
      if (std::find(e.begin(), e.end(), r.record_id) == e.end()) e.push_back(r.record_id);
    }
    EXPECT_EQ(first_seen, expected);
  }

  fs::path dir_;
  std::string path_;
  std::unique_ptr<sqlite_outbox> real_;
  std::unique_ptr<failing_outbox> store_;
  std::int64_t owner_ = 0;
  asio::io_context io_;
  mappings::mapping_source mappings_{std::make_shared<const mappings::mapping_set>(test_support::shipped_tables(),
                                                                                test_support::default_config())};
  std::mt19937_64 random_{7};
};

TEST_F(sync_engine_test, delivers_each_patient_in_order_and_patients_side_by_side) {
  const auto records = patients(4);
  real_->enqueue(records, {}, now_ms());
  fake_ehr ehr(io_, 2);
  recording_sink events;
  const auto report = run_until_idle(ehr, events);
  EXPECT_EQ(report.delivered, 12);
  EXPECT_EQ(ehr.commits().size(), 12u);
  expect_in_order(ehr, records);
  EXPECT_EQ(events.count("delivered"), 12);
  EXPECT_EQ(count(record_state::in_flight), 0);
}

TEST_F(sync_engine_test, a_follow_up_that_arrives_first_waits_for_its_procedure) {
  auto records = pathway(1);
  std::swap(records[1], records[2]);  // follow-up before procedure
  real_->enqueue(records, {}, now_ms());
  fake_ehr ehr(io_, 2);
  recording_sink events;
  run_until_idle(ehr, events);
  EXPECT_TRUE(all_delivered(3));
  EXPECT_EQ(events.count("held"), 1);
  ASSERT_EQ(ehr.commits().size(), 3u);
  EXPECT_EQ(ehr.commits()[2].record_id, "F-1");
}

TEST_F(sync_engine_test, retries_a_503_and_dead_letters_a_422_without_blocking_others) {
  real_->enqueue(patients(2), {}, now_ms());
  fake_ehr ehr(io_, 1);
  ehr.script = [](int n, const std::string& id) {
    if (id == "C-0") return act::refuse_422;
    return n == 2 ? act::refuse_503 : act::commit;
  };
  recording_sink events;
  for (int i = 0; i < 5 && !(count(record_state::delivered) == 5 && count(record_state::dead) == 1); ++i) {
    run_until_idle(ehr, events);  // sync --once may stop before a retry falls due: run again, as a person would
  }
  EXPECT_EQ(count(record_state::dead), 1);
  EXPECT_EQ(count(record_state::delivered), 5);
  EXPECT_GE(events.count("retry_scheduled"), 1);
  EXPECT_EQ(events.count("dead_lettered"), 1);
}

// With ehr.write_mode auto the first request is GET /metadata. Whatever it answers short of a
// CapabilityStatement is the EHR's fault, never the record's: a 422 or a 204 there neither
// dead-letters nor "delivers" a record that was never sent; it is retried.
TEST_F(sync_engine_test, a_metadata_read_that_fails_neither_delivers_nor_dead_letters_the_record) {
  mode_ = write_mode::automatic;
  real_->enqueue(patients(1), {}, now_ms());
  fake_ehr ehr(io_, 1);
  ehr.script = [](int, const std::string&) { return act::refuse_422; };
  recording_sink events;
  for (int i = 0; i < 3; ++i) run_until_idle(ehr, events);
  EXPECT_EQ(count(record_state::dead), 0);
  EXPECT_EQ(count(record_state::delivered), 0);
  EXPECT_EQ(count(record_state::retry_scheduled) + count(record_state::pending), 3);
  EXPECT_TRUE(ehr.commits().empty());
  EXPECT_GE(events.count("retry_scheduled"), 1);
}

TEST_F(sync_engine_test, credentials_refused_pause_delivery_and_dead_letter_nothing) {
  real_->enqueue(patients(3), {}, now_ms());
  fake_ehr ehr(io_, 2);
  ehr.script = [](int, const std::string&) { return act::refuse_401; };
  recording_sink events;
  const auto report = run_until_idle(ehr, events);
  EXPECT_TRUE(report.auth_fault);
  EXPECT_EQ(count(record_state::dead), 0);
  EXPECT_LE(ehr.requests(), 2) << "after the first 401s no more records are tried";
  EXPECT_EQ(count(record_state::in_flight), 0);
}

TEST_F(sync_engine_test, an_ehr_that_stops_taking_transactions_pauses_delivery_and_dead_letters_nothing) {
  refusal_pauses_and_dead_letters_nothing(act::refuse_405);
}

TEST_F(sync_engine_test, a_not_supported_outcome_pauses_delivery_too) {
  refusal_pauses_and_dead_letters_nothing(act::not_supported);
}

TEST_F(sync_engine_test, an_ehr_that_is_down_is_backed_off_as_a_whole) {
  real_->enqueue(patients(5), {}, now_ms());
  fake_ehr ehr(io_, 2);
  ehr.script = [](int, const std::string&) { return act::fail_before_send; };
  recording_sink events;
  const auto report = run_until_idle(ehr, events);
  EXPECT_TRUE(report.ehr_unreachable);
  EXPECT_LE(ehr.requests(), 2) << "one failed round stops sync --once instead of trying lane after lane";
  EXPECT_EQ(count(record_state::dead), 0);
  EXPECT_EQ(real_->status(now_ms()).maybe_at_ehr, 0) << "refused connections sent nothing";
}

// Finding 3 of issue 8: revision 1 committed but its answer lost; revision 2 supersedes it and must
// retract what revision 1 made and revision 2 no longer makes.
TEST_F(sync_engine_test, an_amendment_after_a_lost_answer_retracts_what_the_lost_revision_made) {
  auto records = pathway(1);
  records.resize(2);  // consultation, procedure (with an immediate reaction: an AdverseEvent)
  real_->enqueue(records, {}, now_ms());
  fake_ehr ehr(io_, 1);
  ehr.script = [](int n, const std::string&) { return n == 2 ? act::commit_then_reset : act::commit; };
  recording_sink events;
  run_until_idle(ehr, events);  // the procedure's answer is lost: retry scheduled, possibly at the EHR
  ASSERT_EQ(real_->status(now_ms()).maybe_at_ehr, 1);
  real_->enqueue({procedure_amended(1)}, {}, now_ms());  // supersedes revision 1 before its retry
  for (int i = 0; i < 5 && !all_delivered(2); ++i) run_until_idle(ehr, events);
  ASSERT_TRUE(all_delivered(2));
  const auto& last = ehr.commits().back();
  ASSERT_EQ(last.record_id, "P-1");
  ASSERT_EQ(last.revision, 2);
  // Revision 2's bundle carries revision 1's AdverseEvent, tagged entered-in-error.
  const auto adverse = last.bundle.find("\"resourceType\":\"AdverseEvent\"");
  ASSERT_NE(adverse, std::string::npos) << "the lost revision's AdverseEvent is not retracted";
  EXPECT_NE(last.bundle.find("entered-in-error", adverse), std::string::npos);
}

TEST_F(sync_engine_test, a_gateway_timeout_counts_as_possibly_delivered) {
  auto records = pathway(1);
  records.resize(1);
  real_->enqueue(records, {}, now_ms());
  fake_ehr ehr(io_, 1);
  ehr.script = [](int n, const std::string&) { return n == 1 ? act::answer_504 : act::commit; };
  recording_sink events;
  run_until_idle(ehr, events);
  EXPECT_TRUE(events.any_detail("possibly at the EHR")) << "a 504 leaves the outcome unknown";
  for (int i = 0; i < 5 && !all_delivered(1); ++i) run_until_idle(ehr, events);
  EXPECT_TRUE(all_delivered(1));
  EXPECT_EQ(events.count("retry_scheduled"), 1);
}

TEST_F(sync_engine_test, a_request_whose_lease_ran_out_is_withheld_and_released_not_sent) {
  auto records = pathway(1);
  records.resize(1);
  real_->enqueue(records, {}, now_ms());
  fake_ehr ehr(io_, 1);
  recording_sink events;
  store_worker worker(io_, *store_, store_worker::mode::inline_);
  auto settings = fast(true);
  settings.lease = std::chrono::milliseconds(30);  // the local deadline is 25 ms after the claim
  sync_engine engine(io_, worker, ehr, mappings_, policy(10), events, now_ms, settings);
  // The first request sits in the client (connecting, say) until its lease has run out.
  ehr.hold = [](int n) { return n == 1; };
  bool idle = false;
  engine.start(owner_, [&] { idle = true; });
  run_until([&] { return !ehr.held.empty(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(40));
  ASSERT_EQ(ehr.held.size(), 1u);
  EXPECT_FALSE(ehr.held[0].first.may_send()) << "a request past its lease must not go out";
  ehr.hold = nullptr;
  ehr.release_held(act::withhold);
  run_until([&] { return idle; });
  for (int i = 0; i < 5 && !all_delivered(1); ++i) run_until_idle(ehr, events);
  EXPECT_TRUE(all_delivered(1));
  EXPECT_EQ(ehr.commits().size(), 1u);
  EXPECT_EQ(real_->record_history("C-1").at(0).attempts, 1) << "withheld is not an attempt";
}

TEST_F(sync_engine_test, a_claim_taken_over_meanwhile_records_nothing_and_says_so) {
  auto records = pathway(1);
  records.resize(1);
  real_->enqueue(records, {}, now_ms());
  fake_ehr ehr(io_, 1);
  ehr.hold = [](int n) { return n == 1; };
  recording_sink events;
  store_worker worker(io_, *store_, store_worker::mode::inline_);
  sync_engine engine(io_, worker, ehr, mappings_, policy(10), events, now_ms, fast(false));
  engine.start(owner_);
  run_until([&] { return !ehr.held.empty(); });
  // Another process decides this one stalled (its lease ran out) and takes the record back.
  sqlite_outbox other(path_, sqlite_options{.full_sync = false, .on_busy = {}});
  ASSERT_EQ(other.take_over(now_ms() + 60000, 1000000).size(), 1u);
  other.take_over(now_ms(), 0);  // and the lane due now rather than in a minute
  ehr.hold = nullptr;
  ehr.release_held(act::commit);
  run_until([&] { return events.count("claim_lost") == 1 && all_delivered(1); });
  EXPECT_EQ(events.count("claim_lost"), 1);
  bool stopped = false;
  engine.stop([&] { stopped = true; });
  run_until([&] { return stopped; });
}

// Found in review: a record taken back from this process (its lease looked run out: the wall
// clock jumped) and claimed again by it was two flights under one key; the old request could go
// out late and its answer settle the new claim.
TEST_F(sync_engine_test, a_record_claimed_anew_never_lets_the_old_request_out) {
  auto records = pathway(1);
  records.resize(1);
  real_->enqueue(records, {}, now_ms());
  fake_ehr ehr(io_, 2);
  ehr.hold = [](int n) { return n == 1; };  // the first request is still connecting
  recording_sink events;
  store_worker worker(io_, *store_, store_worker::mode::inline_);
  sync_engine engine(io_, worker, ehr, mappings_, policy(10), events, now_ms, fast(false));
  engine.start(owner_);
  run_until([&] { return !ehr.held.empty(); });
  sqlite_outbox other(path_, sqlite_options{.full_sync = false, .on_busy = {}});
  ASSERT_EQ(other.take_over(now_ms() + 600000, 1000000).size(), 1u);  // as a wall clock 10 minutes ahead sees it
  other.take_over(now_ms(), 0);                                       // due now
  run_until([&] { return ehr.commits().size() == 1; });               // claimed anew and delivered
  ehr.release_held(act::commit);                                      // the old request reaches its write
  run_until([&] { return all_delivered(1) && engine.in_flight() == 0; });
  EXPECT_EQ(ehr.commits().size(), 1u) << "the old request went out";
  EXPECT_TRUE(all_delivered(1));
  bool stopped = false;
  engine.stop([&] { stopped = true; });
  run_until([&] { return stopped; });
}

// An EHR closing a kept-alive connection as a request goes out is not an outage: sync --once goes
// on with the other lanes, and the record is retried as possibly delivered.
TEST_F(sync_engine_test, a_close_on_a_reused_connection_is_not_taken_for_an_outage) {
  real_->enqueue(patients(2), {}, now_ms());
  fake_ehr ehr(io_, 1);
  ehr.script = [](int n, const std::string&) { return n == 2 ? act::closed_on_reuse : act::commit; };
  recording_sink events;
  const auto report = run_until_idle(ehr, events);
  EXPECT_FALSE(report.ehr_unreachable);
  EXPECT_GE(report.delivered, 4) << "the run did not stop at the close";
  EXPECT_TRUE(events.any_detail("possibly at the EHR"));
}

TEST_F(sync_engine_test, stopping_finishes_the_requests_in_flight_and_takes_no_new_one) {
  real_->enqueue(patients(3), {}, now_ms());
  fake_ehr ehr(io_, 2);
  ehr.hold = [](int n) { return n <= 2; };
  recording_sink events;
  store_worker worker(io_, *store_, store_worker::mode::inline_);
  sync_engine engine(io_, worker, ehr, mappings_, policy(10), events, now_ms, fast(false));
  engine.start(owner_);
  run_until([&] { return ehr.held.size() == 2; });
  bool stopped = false;
  engine.stop([&] { stopped = true; });
  ehr.release_held(act::commit);
  run_until([&] { return stopped; });
  EXPECT_EQ(ehr.commits().size(), 2u);
  EXPECT_EQ(count(record_state::in_flight), 0);
  EXPECT_EQ(count(record_state::delivered), 2);
}

// ---- a failure at every step ----

// The store fails at its 1st, 2nd, 3rd ... call (busy), with the daemon engine running: it must
// recover by itself every time, deliver everything once in effect and in order, and leave nothing
// in flight.
TEST_F(sync_engine_test, the_store_failing_at_every_step) {
  const auto records = patients(2);
  int clean_calls = 0;
  {
    real_->enqueue(records, {}, now_ms());
    fake_ehr ehr(io_, 2);
    recording_sink events;
    store_->calls = 0;
    run_daemon_until(ehr, events, [&] { return all_delivered(6); });
    clean_calls = store_->calls;
  }
  ASSERT_GT(clean_calls, 10);
  for (int commit_then_fail = 0; commit_then_fail < 2; ++commit_then_fail) {
    for (int n = 1; n <= clean_calls; ++n) {
      SCOPED_TRACE("store call " + std::to_string(n) + (commit_then_fail ? " (committed, then failed)" : " (busy)"));
      TearDown();
      SetUp();
      real_->enqueue(records, {}, now_ms());
      store_->fail_at = n;
      store_->commit_then_fail = commit_then_fail == 1;
      fake_ehr ehr(io_, 2);
      recording_sink events;
      run_daemon_until(ehr, events, [&] { return all_delivered(6) && count(record_state::in_flight) == 0; });
      ASSERT_TRUE(all_delivered(6));
      expect_in_order(ehr, records);
      // Degraded mode is left by itself (a failure during the final stop may stay unanswered).
      EXPECT_GE(events.count("store_restored"), events.count("store_degraded") - 1);
      EXPECT_EQ(events.count("claim_lost"), 0) << "a repeated settle is not a lost claim";
    }
  }
}

// The EHR fails the 1st, 2nd, 3rd ... request in each way it can: delivery goes on by itself.
TEST_F(sync_engine_test, the_ehr_failing_at_every_request_in_every_way) {
  const auto records = patients(2);
  for (act failure : {act::refuse_503, act::fail_before_send, act::commit_then_reset, act::time_out, act::answer_504}) {
    for (int n = 1; n <= 6; ++n) {
      SCOPED_TRACE("request " + std::to_string(n) + " fails in way " + std::to_string(static_cast<int>(failure)));
      TearDown();
      SetUp();
      real_->enqueue(records, {}, now_ms());
      fake_ehr ehr(io_, 2);
      ehr.script = [&](int request, const std::string&) { return request == n ? failure : act::commit; };
      recording_sink events;
      run_daemon_until(ehr, events, [&] { return all_delivered(6) && count(record_state::in_flight) == 0; });
      ASSERT_TRUE(all_delivered(6));
      expect_in_order(ehr, records);
    }
  }
}

// A bug in the client: its Nth send throws. The claim is released, not left in flight.
TEST_F(sync_engine_test, a_client_that_throws_leaves_nothing_in_flight) {
  const auto records = patients(2);
  for (int n = 1; n <= 6; ++n) {
    SCOPED_TRACE("send " + std::to_string(n) + " throws");
    TearDown();
    SetUp();
    real_->enqueue(records, {}, now_ms());
    fake_ehr ehr(io_, 2);
    ehr.throw_on_send = n;
    recording_sink events;
    run_daemon_until(ehr, events, [&] { return all_delivered(6) && count(record_state::in_flight) == 0; });
    ASSERT_TRUE(all_delivered(6));
    expect_in_order(ehr, records);
  }
}

// An exception where none should be (here: the event sink throwing at its 1st, 2nd ... event) must
// not leave a claim in flight.
TEST_F(sync_engine_test, an_exception_at_every_event_leaves_nothing_in_flight) {
  const auto records = patients(1);
  for (int n = 1; n <= 12; ++n) {
    SCOPED_TRACE("event " + std::to_string(n) + " throws");
    TearDown();
    SetUp();
    real_->enqueue(records, {}, now_ms());
    fake_ehr ehr(io_, 2);
    recording_sink events;
    events.throw_at = n;
    run_daemon_until(ehr, events, [&] { return all_delivered(3) && count(record_state::in_flight) == 0; });
    ASSERT_TRUE(all_delivered(3));
  }
}

}  // namespace
