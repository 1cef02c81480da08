// The outbox on a real SQLite file: durability, revisions, quarantine, status.
#include "connector/outbox/sqlite_outbox.h"

#include <sys/stat.h>

#include <filesystem>

#include <gtest/gtest.h>

namespace {

namespace fs = std::filesystem;
using namespace connector;

class sqlite_outbox_test : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("outbox-test-" + std::to_string(::getpid()) + "-" +
                                        testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    path_ = (dir_ / "outbox.db").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  static inbound_record record(std::string id, int revision, std::string patient = "p-1") {
    return {std::move(id), revision, "procedure", std::move(patient), "{\"record_id\":\"x\"}"};
  }

  fs::path dir_;
  std::string path_;
};

TEST_F(sqlite_outbox_test, a_committed_batch_is_there_after_reopening) {
  {
    sqlite_outbox store(path_);
    const auto results = store.enqueue({record("P-1", 1), record("C-1", 1, "p-2")}, {}, 1000);
    EXPECT_EQ(results, (std::vector<enqueue_result>{enqueue_result::accepted, enqueue_result::accepted}));
  }
  sqlite_outbox reopened(path_);
  const auto s = reopened.status(61000);
  EXPECT_EQ(s.records.at(record_state::pending), 2);
  EXPECT_EQ(s.oldest_pending_age_ms, 60000);
}

TEST_F(sqlite_outbox_test, revisions_decide_between_accepted_duplicate_stale_and_superseding) {
  sqlite_outbox store(path_);
  store.enqueue({record("P-1", 1)}, {}, 1000);
  EXPECT_EQ(store.enqueue({record("P-1", 1)}, {}, 2000), std::vector<enqueue_result>{enqueue_result::duplicate});
  EXPECT_EQ(store.enqueue({record("P-1", 3)}, {}, 3000),
            std::vector<enqueue_result>{enqueue_result::accepted_superseding});
  EXPECT_EQ(store.enqueue({record("P-1", 2)}, {}, 4000), std::vector<enqueue_result>{enqueue_result::stale});
  const auto s = store.status(5000);
  EXPECT_EQ(s.records.at(record_state::pending), 1);     // revision 3
  EXPECT_EQ(s.records.at(record_state::superseded), 1);  // revision 1, never sent
}

TEST_F(sqlite_outbox_test, one_batch_can_hold_two_revisions_of_a_record) {
  sqlite_outbox store(path_);
  const auto results = store.enqueue({record("P-1", 1), record("P-1", 2), record("P-1", 2)}, {}, 1000);
  EXPECT_EQ(results, (std::vector<enqueue_result>{enqueue_result::accepted, enqueue_result::accepted_superseding,
                                                  enqueue_result::duplicate}));
}

TEST_F(sqlite_outbox_test, rejected_records_are_kept_with_their_problems) {
  sqlite_outbox store(path_);
  fhir::issues problems = {{fhir::severity::error, "required", "procedure.product.lot", "is required"}};
  store.enqueue({}, {{"visit.ndjson", "P-9", "{\"record_id\":\"P-9\"}", problems}}, 1000);
  EXPECT_EQ(store.status(1000).quarantined, 1);
  sqlite::database db(path_);
  sqlite::statement q(db.handle(), "SELECT source, record_id, body, problems FROM quarantine");
  ASSERT_TRUE(q.step());
  EXPECT_EQ(q.column_text(0), "visit.ndjson");
  EXPECT_EQ(q.column_text(1), "P-9");
  EXPECT_EQ(q.column_text(2), "{\"record_id\":\"P-9\"}");
  EXPECT_NE(q.column_text(3).find("\"expression\":[\"procedure.product.lot\"]"), std::string::npos);
}

TEST_F(sqlite_outbox_test, the_store_is_readable_by_its_owner_only_and_durable_by_default) {
  sqlite_outbox store(path_);
  struct stat st{};
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  sqlite::database db(path_);
  sqlite::statement mode(db.handle(), "PRAGMA journal_mode");
  ASSERT_TRUE(mode.step());
  EXPECT_EQ(mode.column_text(0), "wal");
}

TEST_F(sqlite_outbox_test, an_unopenable_store_is_a_clear_error) {
  EXPECT_THROW(sqlite_outbox((dir_ / "missing-folder" / "outbox.db").string()), store_error);
}

}  // namespace

namespace {

using connector::attempt_report;
using result = attempt_report::result;

constexpr std::int64_t lease = 60000;

class lanes_test : public sqlite_outbox_test {
 protected:
  void SetUp() override {
    sqlite_outbox_test::SetUp();
    store_ = std::make_unique<sqlite_outbox>(path_);
    owner_ = store_->register_owner("sync", 1000);
  }
  std::vector<std::string> claim_ids(std::int64_t now, int limit = 100) {
    std::vector<std::string> ids;
    for (const auto& c : store_->claim(owner_, now, lease, limit)) ids.push_back(c.record_id);
    return ids;
  }
  connector::claimed_record claim_one(std::int64_t now) {
    auto c = store_->claim(owner_, now, lease, 1);
    EXPECT_EQ(c.size(), 1u);
    return c.empty() ? connector::claimed_record{} : c[0];
  }
  std::unique_ptr<sqlite_outbox> store_;
  std::int64_t owner_ = 0;
};

TEST_F(lanes_test, one_record_per_patient_at_a_time_in_arrival_order) {
  store_->enqueue({record("A-1", 1, "a"), record("B-1", 1, "b"), record("A-2", 1, "a")}, {}, 1000);
  EXPECT_EQ(claim_ids(1000), (std::vector<std::string>{"A-1", "B-1"}));
  EXPECT_TRUE(claim_ids(1000).empty());  // both lanes are in flight
}

TEST_F(lanes_test, delivery_moves_the_lane_on) {
  store_->enqueue({record("A-1", 1, "a"), record("A-2", 1, "a")}, {}, 1000);
  const auto first = claim_one(1000);
  EXPECT_TRUE(store_->settle(first, {result::delivered, 0, "", "{\"resourceType\":\"Bundle\"}", false, std::nullopt}, 2000));
  const auto second = claim_one(2000);
  EXPECT_EQ(second.record_id, "A-2");
  EXPECT_EQ(second.attempts, 1);
  EXPECT_EQ(store_->history("a", second.seq).size(), 1u);  // A-1, delivered
}

TEST_F(lanes_test, a_retry_holds_back_only_its_patient_until_its_time) {
  store_->enqueue({record("A-1", 1, "a"), record("A-2", 1, "a"), record("B-1", 1, "b")}, {}, 1000);
  const auto a = claim_one(1000);
  store_->settle(a, {result::retry, 5000, "HTTP 503: will retry", "", false, std::nullopt}, 1000);
  EXPECT_EQ(claim_ids(1000), std::vector<std::string>{"B-1"});  // A-2 waits behind A-1
  EXPECT_TRUE(claim_ids(4999).empty());
  const auto again = claim_one(5000);
  EXPECT_EQ(again.record_id, "A-1");
  EXPECT_EQ(again.attempts, 2);
  EXPECT_EQ(store_->status(5000).last_error, "HTTP 503: will retry");
}

TEST_F(lanes_test, a_dead_letter_does_not_block_its_patient) {
  store_->enqueue({record("A-1", 1, "a"), record("A-2", 1, "a")}, {}, 1000);
  store_->settle(claim_one(1000), {result::dead, 0, "HTTP 422: the EHR refused the record", "{}", false, std::nullopt}, 1000);
  EXPECT_EQ(claim_ids(1000), std::vector<std::string>{"A-2"});
  EXPECT_EQ(store_->status(1000).records.at(record_state::dead), 1);
}

TEST_F(lanes_test, a_held_follow_up_steps_aside_and_returns_when_a_procedure_is_delivered) {
  store_->enqueue({record("F-1", 1, "a"), record("P-1", 1, "a")}, {}, 1000);
  store_->settle(claim_one(1000), {result::held, 0, "waits for procedure P-1", "", false, std::nullopt}, 1000);
  const auto procedure = claim_one(1000);
  EXPECT_EQ(procedure.record_id, "P-1");
  EXPECT_EQ(store_->status(1000).records.at(record_state::held), 1);
  store_->settle(procedure, {result::delivered, 0, "", "{}", false, std::nullopt}, 2000);
  const auto follow_up = claim_one(2000);
  EXPECT_EQ(follow_up.record_id, "F-1");
  EXPECT_EQ(follow_up.attempts, 1);  // waiting was not an attempt
}

TEST_F(lanes_test, a_released_record_was_not_attempted) {
  store_->enqueue({record("A-1", 1, "a")}, {}, 1000);
  store_->settle(claim_one(1000), {result::released, 60000, "delivery paused", "", false, std::nullopt}, 1000);
  EXPECT_TRUE(claim_ids(59999).empty());
  EXPECT_EQ(claim_one(60000).attempts, 1);
}

TEST_F(lanes_test, a_newer_revision_replaces_a_waiting_one_in_its_lane) {
  store_->enqueue({record("A-1", 1, "a")}, {}, 1000);
  store_->settle(claim_one(1000), {result::retry, 5000, "timed out: will retry", "", false, std::nullopt}, 1000);
  store_->enqueue({record("A-1", 2, "a")}, {}, 2000);
  const auto c = claim_one(2000);  // revision 2 is ready now; revision 1 will never be sent
  EXPECT_EQ(c.revision, 2);
  EXPECT_EQ(store_->status(2000).records.at(record_state::superseded), 1);
}

TEST_F(lanes_test, waiting_lanes_keep_their_place_when_more_records_arrive) {
  store_->enqueue({record("A-1", 1, "a")}, {}, 1000);
  store_->enqueue({record("B-1", 1, "b")}, {}, 2000);
  store_->enqueue({record("A-2", 1, "a")}, {}, 3000);  // must not push lane a behind lane b
  EXPECT_EQ(claim_ids(3000, 1), std::vector<std::string>{"A-1"});
}

TEST_F(lanes_test, replay_requeues_dead_letters_and_records_who_and_why) {
  store_->enqueue({record("A-1", 1, "a"), record("B-1", 1, "b")}, {}, 1000);
  for (const auto& c : store_->claim(owner_, 1000, lease, 2)) {
    store_->settle(c, {result::dead, 0, "HTTP 422: the EHR refused the record", "{}", false, std::nullopt}, 1000);
  }
  const auto dry = store_->replay("A-1", "fixed the code table", "it-staff", true, 2000);
  ASSERT_EQ(dry.size(), 1u);
  EXPECT_EQ(dry[0].last_error, "HTTP 422: the EHR refused the record");
  EXPECT_TRUE(claim_ids(2000).empty());  // a dry run changes nothing

  EXPECT_EQ(store_->replay("", "EHR fixed", "it-staff", false, 3000).size(), 2u);
  const auto again = store_->claim(owner_, 3000, lease, 10);
  ASSERT_EQ(again.size(), 2u);
  EXPECT_EQ(again[0].attempts, 1);
  sqlite::database db(path_);
  sqlite::statement audit(db.handle(), "SELECT record_id, reason, requested_by, previous_error FROM replays ORDER BY id");
  ASSERT_TRUE(audit.step());
  EXPECT_EQ(audit.column_text(0), "A-1");
  EXPECT_EQ(audit.column_text(1), "EHR fixed");
  EXPECT_EQ(audit.column_text(2), "it-staff");
  EXPECT_EQ(audit.column_text(3), "HTTP 422: the EHR refused the record");
  EXPECT_TRUE(store_->replay("A-1", "again", "it-staff", false, 4000).empty());  // no longer dead
}

// ---- claims: owners, leases, fencing, take-over ----

TEST_F(lanes_test, a_claim_carries_its_owner_and_a_new_token_each_time) {
  store_->enqueue({record("A-1", 1, "a")}, {}, 1000);
  const auto first = claim_one(1000);
  EXPECT_EQ(first.owner, owner_);
  store_->settle(first, {result::released, 1000, "not sent", "", false, std::nullopt}, 1000);
  const auto second = claim_one(1000);
  EXPECT_GT(second.token, first.token);
}

TEST_F(lanes_test, a_settle_with_a_stale_token_is_refused_and_changes_nothing) {
  store_->enqueue({record("A-1", 1, "a"), record("A-2", 1, "a")}, {}, 1000);
  const auto stale = claim_one(1000);
  EXPECT_EQ(store_->take_over(1000 + lease, 1000000).size(), 1u);  // the lease ran out
  const auto current = claim_one(1000 + lease);
  EXPECT_EQ(current.record_id, "A-1");
  EXPECT_FALSE(store_->settle(stale, {result::delivered, 0, "", "[]", false, std::nullopt}, 70000));
  EXPECT_EQ(store_->status(70000).records.at(record_state::in_flight), 1);  // still the current holder's
  EXPECT_TRUE(store_->settle(current, {result::delivered, 0, "", "[]", false, std::nullopt}, 70000));
  EXPECT_EQ(claim_ids(70000), std::vector<std::string>{"A-2"});
}

TEST_F(lanes_test, a_live_holders_claims_are_not_taken_before_their_lease_runs_out) {
  store_->enqueue({record("A-1", 1, "a")}, {}, 1000);
  const auto c = claim_one(1000);
  sqlite_outbox other(path_);  // another process's connection
  EXPECT_TRUE(other.take_over(1000 + lease - 1, 1000000).empty());
  const std::int64_t other_owner = other.register_owner("sync", 1000);
  EXPECT_TRUE(other.claim(other_owner, 2000, lease, 10).empty()) << "the lane is held";
  EXPECT_EQ(store_->renew({c}, 50000, lease), std::vector<std::int64_t>{});
  EXPECT_TRUE(other.take_over(1000 + lease + 1, 1000000).empty()) << "renewed until 110000";
  EXPECT_EQ(other.take_over(50000 + lease, 1000000).size(), 1u);
  EXPECT_EQ(store_->renew({c}, 120000, lease), std::vector<std::int64_t>{c.seq}) << "taken over: renewal fails";
}

TEST_F(lanes_test, a_dead_holders_claims_are_taken_back_at_once_and_marked_possibly_delivered) {
  store_->enqueue({record("A-1", 1, "a")}, {}, 1000);
  claim_one(1000);
  store_.reset();  // the process died: the kernel released its owner lock
  sqlite_outbox other(path_);
  const auto taken = other.take_over(1001, 1000000);  // long before the lease runs out
  ASSERT_EQ(taken.size(), 1u);
  EXPECT_EQ(taken[0].record_id, "A-1");
  EXPECT_NE(taken[0].holder.find("(gone)"), std::string::npos) << taken[0].holder;
  const std::int64_t me = other.register_owner("sync", 1001);
  const auto again = other.claim(me, 1001, lease, 1);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].attempts, 2);
  EXPECT_EQ(other.status(1001).maybe_at_ehr, 1);
  EXPECT_TRUE(other.record_history("A-1").at(0).maybe_at_ehr);
}

TEST_F(lanes_test, own_claims_are_never_taken_for_a_dead_holders) {
  store_->enqueue({record("A-1", 1, "a")}, {}, 1000);
  claim_one(1000);
  EXPECT_TRUE(store_->take_over(1001, 1000000).empty()) << "this object's own owner lock is not another's";
}

TEST_F(lanes_test, one_daemon_per_store_and_its_pid_named) {
  sqlite_outbox first(path_), second(path_);
  first.register_owner("daemon", 1000);
  try {
    second.register_owner("daemon", 1000);
    FAIL() << "a second daemon was allowed";
  } catch (const store_error& e) {
    EXPECT_NE(std::string(e.what()).find("pid " + std::to_string(::getpid())), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(second.register_owner("sync", 1000)) << "sync --once may run beside the daemon";
}

TEST_F(lanes_test, a_clean_exit_returns_its_claims_and_leaves_no_owner) {
  store_->enqueue({record("A-1", 1, "a")}, {}, 1000);
  claim_one(1000);
  store_->release_owner(owner_, 2000);
  const auto s = store_->status(2000);
  EXPECT_EQ(s.records.at(record_state::in_flight), 0);
  EXPECT_EQ(s.maybe_at_ehr, 1);
  EXPECT_TRUE(s.owners.empty());
}

TEST_F(lanes_test, status_names_the_processes_and_what_each_holds) {
  store_->enqueue({record("A-1", 1, "a"), record("B-1", 1, "b")}, {}, 1000);
  claim_ids(1000);
  const auto s = store_->status(1000);
  ASSERT_EQ(s.owners.size(), 1u);
  EXPECT_EQ(s.owners[0].kind, "sync");
  EXPECT_EQ(s.owners[0].pid, ::getpid());
  EXPECT_TRUE(s.owners[0].alive);
  EXPECT_EQ(s.owners[0].claims, 2);
}

TEST_F(lanes_test, a_lane_due_beyond_the_horizon_is_due_now_after_the_clock_stepped_back) {
  store_->enqueue({record("A-1", 1, "a")}, {}, 1000);
  // Scheduled an hour ahead by a clock that was an hour fast, then set right.
  store_->settle(claim_one(1000), {result::retry, 1000 + 3600000, "HTTP 503", "", false, std::nullopt}, 1000);
  EXPECT_TRUE(claim_ids(2000).empty());
  store_->take_over(2000, 11 * 60000);  // nothing the connector sets waits longer than 11 minutes
  EXPECT_EQ(claim_ids(2000), std::vector<std::string>{"A-1"});
}

// Found in review: a revision naming another patient left the superseded one claimable in the
// first patient's lane, so two revisions of one record could be in flight at once.
TEST_F(lanes_test, a_record_never_moves_between_patients) {
  store_->enqueue({record("X-1", 1, "a")}, {}, 1000);
  EXPECT_EQ(store_->enqueue({record("X-1", 2, "b")}, {}, 2000), std::vector<enqueue_result>{enqueue_result::other_patient});
  const auto s = store_->status(2000);
  EXPECT_EQ(s.quarantined, 1);
  EXPECT_EQ(s.records.at(record_state::pending), 1) << "revision 1 is untouched";
  EXPECT_EQ(s.records.at(record_state::superseded), 0);
  const auto q = store_->quarantined(1).at(0);
  EXPECT_NE(q.problems_json.find("patient.mrn"), std::string::npos);
  EXPECT_EQ(claim_ids(2000), std::vector<std::string>{"X-1"});
  EXPECT_TRUE(claim_ids(2000).empty());
}

// Found in review: a dead letter replayed while a later record of its patient was in flight
// headed the lane as ready, and went out beside it.
TEST_F(lanes_test, a_replayed_dead_letter_waits_while_its_patient_has_a_record_in_flight) {
  store_->enqueue({record("A-1", 1, "a"), record("A-2", 1, "a")}, {}, 1000);
  store_->settle(claim_one(1000), {result::dead, 0, "HTTP 422", "{}", false, std::nullopt}, 1000);
  const auto second = claim_one(1000);
  EXPECT_EQ(second.record_id, "A-2");
  ASSERT_EQ(store_->replay("A-1", "fixed", "it-staff", false, 2000).size(), 1u);
  EXPECT_TRUE(claim_ids(2000).empty()) << "A-2 is still in flight: nothing else of this patient goes";
  EXPECT_EQ(store_->status(2000).records.at(record_state::in_flight), 1);
  store_->settle(second, {result::delivered, 0, "", "[]", false, std::nullopt}, 3000);
  EXPECT_EQ(claim_ids(3000), std::vector<std::string>{"A-1"});
}

TEST_F(lanes_test, own_claims_held_are_not_taken_back_even_when_their_lease_looks_run_out) {
  store_->enqueue({record("A-1", 1, "a")}, {}, 1000);
  const auto c = claim_one(1000);
  // The wall clock jumped an hour ahead: the lease looks long gone, but this object knows it holds it.
  EXPECT_TRUE(store_->take_over(1000 + 3600000, 1000000, {c}).empty());
  EXPECT_TRUE(store_->settle(c, {result::delivered, 0, "", "[]", false, std::nullopt}, 1000 + 3600000));
}

TEST_F(lanes_test, own_claims_not_held_come_back_once_their_lease_ran_out) {
  store_->enqueue({record("A-1", 1, "a")}, {}, 1000);
  claim_one(1000);  // a claim whose commit the caller could not confirm: it does not know it holds it
  EXPECT_TRUE(store_->take_over(1000 + lease - 1, 1000000, {}).empty()) << "not before the lease ran out";
  EXPECT_EQ(store_->take_over(1000 + lease, 1000000, {}).size(), 1u);
}

// ---- "possibly at the EHR" ----

TEST_F(lanes_test, an_unanswered_revision_joins_the_history_of_its_amendment) {
  store_->enqueue({record("A-1", 1, "a")}, {}, 1000);
  const auto r1 = claim_one(1000);
  store_->settle(r1, {result::retry, 5000, "timed out", "", true, std::nullopt}, 1000);
  store_->enqueue({record("A-1", 2, "a")}, {}, 2000);  // supersedes revision 1, which may be at the EHR
  const auto r2 = claim_one(2000);
  EXPECT_EQ(r2.revision, 2);
  EXPECT_EQ(store_->history("a", r2.seq).size(), 1u) << "revision 1 is in the history of revision 2";
  store_->settle(r2, {result::delivered, 0, "", "[]", false, std::nullopt}, 3000);
  EXPECT_EQ(store_->status(3000).maybe_at_ehr, 1) << "the superseded revision stays 'possibly delivered'";
  EXPECT_FALSE(store_->record_history("A-1").at(1).maybe_at_ehr) << "a delivered revision is simply delivered";
}

TEST_F(lanes_test, a_revision_never_sent_stays_out_of_the_history) {
  store_->enqueue({record("A-1", 1, "a")}, {}, 1000);
  store_->settle(claim_one(1000), {result::retry, 5000, "connect: refused", "", false, std::nullopt}, 1000);
  store_->enqueue({record("A-1", 2, "a")}, {}, 2000);
  const auto r2 = claim_one(2000);
  EXPECT_TRUE(store_->history("a", r2.seq).empty());
}

TEST_F(lanes_test, a_settle_notes_the_ehr_contact_in_the_same_transaction) {
  store_->enqueue({record("A-1", 1, "a")}, {}, 1000);
  store_->settle(claim_one(1000), {result::delivered, 0, "", "[]", false, connector::ehr_contact{true, "HTTP 200"}}, 1500);
  const auto s = store_->status(1600);
  EXPECT_TRUE(s.ehr_reached);
  EXPECT_EQ(s.ehr_detail, "HTTP 200");
  EXPECT_EQ(s.ehr_last_contact_ms, 1500);
}

}  // namespace

namespace {

// ---- a failure at every step (after Beast's fail_count): each operation is made to fail at its
// first, second, third ... SQLite step. Whenever it fails the store must be exactly as before and
// the same connection must work again at once; this is what a busy store or a full disk does to
// a statement halfway through.

std::string snapshot(const std::string& path) {
  sqlite::database db(path);
  std::string out;
  auto dump = [&](const char* sql, int columns) {
    sqlite::statement q(db.handle(), sql);
    while (q.step()) {
      for (int i = 0; i < columns; ++i) out += (q.column_is_null(i) ? "null" : q.column_text(i)) + "|";
      out += "\n";
    }
    out += "--\n";
  };
  dump("SELECT seq, record_id, revision, state, attempts, next_attempt_at, claim_owner, claim_token, lease_until, "
       "maybe_at_ehr, last_error, ehr_response FROM records ORDER BY seq", 12);
  dump("SELECT patient_key, head_seq, ready_at FROM lanes ORDER BY patient_key", 3);
  dump("SELECT source, record_id, problems FROM quarantine ORDER BY id", 3);
  dump("SELECT intake_id FROM intakes ORDER BY intake_id", 1);
  dump("SELECT reached, detail, at, unreachable_since FROM ehr_contact", 4);
  dump("SELECT id, kind FROM owners ORDER BY id", 2);
  dump("SELECT record_id, reason FROM replays ORDER BY id", 2);
  dump("SELECT key, value FROM meta ORDER BY key", 2);
  return out;
}

class fail_matrix_test : public sqlite_outbox_test {
 protected:
  // A store where lane "a" has a follow-up held and its procedure in flight, lane "b" a dead
  // letter, lane "c" a record of a dead process in flight, and lane "d" a retry possibly at the EHR.
  struct fixture {
    std::unique_ptr<sqlite_outbox> store;
    std::int64_t owner = 0;
    connector::claimed_record procedure;
  };
  // Built once per test and copied for each step (synchronous=NORMAL: the same statements without
  // an fsync per commit), so the hundreds of fixtures a test needs cost little.
  void make_template() {
    template_ = (dir_ / "template.db").string();
    const connector::sqlite_options fast{.full_sync = false, .on_busy = {}};
    {
      sqlite_outbox gone(template_, fast);  // a process that dies holding C-1
      const std::int64_t o = gone.register_owner("sync", 1000);
      gone.enqueue({record("C-1", 1, "c")}, {}, 1000);
      gone.claim(o, 1000, lease_ms, 1);
    }
    sqlite_outbox store(template_, fast);
    const std::int64_t o = store.register_owner("sync", 1000);
    store.enqueue({record("F-1", 1, "a"), record("P-1", 1, "a"), record("B-1", 1, "b"), record("D-1", 1, "d")}, {}, 1000);
    for (auto& c : store.claim(o, 1000, lease_ms, 10)) {  // F-1, B-1, D-1
      if (c.record_id == "F-1") store.settle(c, {result::held, 0, "waits for procedure P-1", "", false, std::nullopt}, 1000);
      if (c.record_id == "B-1") store.settle(c, {result::dead, 0, "HTTP 422", "{}", false, std::nullopt}, 1000);
      if (c.record_id == "D-1") store.settle(c, {result::retry, 1500, "timed out", "", true, std::nullopt}, 1000);
    }
    store.release_owner(o, 1000);
  }
  fixture build(const std::string& path) {
    if (template_.empty()) make_template();
    fs::copy_file(template_, path, fs::copy_options::overwrite_existing);
    fixture f;
    f.store = std::make_unique<sqlite_outbox>(path, connector::sqlite_options{.full_sync = false, .on_busy = {}});
    f.owner = f.store->register_owner("daemon", 1000);
    f.procedure = f.store->claim(f.owner, 1000, lease_ms, 10).at(0);  // P-1, the one ready lane head
    return f;
  }
  std::string template_;

  // Runs `op` on a fresh fixture failing at step 1, 2, 3 ... until it succeeds.
  template <typename Op>
  void each_step_fails(const char* name, Op op) {
    std::string expected;
    {
      const std::string path = (dir_ / (std::string(name) + "-clean.db")).string();
      auto f = build(path);
      op(f);
      expected = snapshot(path);
    }
    int unknown_commits = 0;
    for (int n = 1;; ++n) {
      ASSERT_LT(n, 20000) << name << " never completed";
      const std::string path = (dir_ / (std::string(name) + "-" + std::to_string(n) + ".db")).string();
      auto f = build(path);
      const std::string before = snapshot(path);
      f.store->fail_after_steps(n);
      bool failed = false, unknown = false;
      try {
        op(f);
      } catch (const store_error& e) {
        failed = true;
        unknown = e.outcome_unknown;
      }
      f.store->fail_after_steps(0);
      if (!failed) {
        EXPECT_EQ(snapshot(path), expected) << name << ": completed at step " << n;
        std::printf("  %s: failed cleanly at each of its first %d steps (%d in COMMIT, reported as unknown)\n", name,
                    n - 1, unknown_commits);
        break;
      }
      if (unknown && snapshot(path) == expected) {
        ++unknown_commits;  // failed in COMMIT, after the transaction had in fact committed
        continue;
      }
      ASSERT_EQ(snapshot(path), before) << name << ": failing at step " << n << " left a trace";
      op(f);  // the same connection, at once: nothing left half-done or in progress
      ASSERT_EQ(snapshot(path), expected) << name << ": after failing at step " << n;
      for (const auto* suffix : {"", "-wal", "-shm", "-owners.lock"}) fs::remove(path + suffix);
    }
  }

  static constexpr std::int64_t lease_ms = 60000;
};

TEST_F(fail_matrix_test, enqueue) {
  each_step_fails("enqueue", [](fixture& f) {
    fhir::issues problems = {{fhir::severity::error, "required", "procedure.product.lot", "is required"}};
    f.store->enqueue({record("D-1", 2, "d"), record("E-1", 1, "e"), record("E-1", 1, "e")},
                     {{"inbox:abc", "X-1", "{}", problems}}, 2000, "inbox:abc");
  });
}

TEST_F(fail_matrix_test, claim) {
  each_step_fails("claim", [](fixture& f) { f.store->claim(f.owner, 2000, lease_ms, 10); });
}

TEST_F(fail_matrix_test, settle_delivered) {
  each_step_fails("settle delivered", [](fixture& f) {
    f.store->settle(f.procedure, {result::delivered, 0, "", "[\"201 Created\"]", false, connector::ehr_contact{true, "HTTP 200"}},
                    2000);
  });
}

TEST_F(fail_matrix_test, settle_retry) {
  each_step_fails("settle retry", [](fixture& f) {
    f.store->settle(f.procedure, {result::retry, 9000, "HTTP 503", "", true, connector::ehr_contact{true, "HTTP 503"}}, 2000);
  });
}

TEST_F(fail_matrix_test, take_over) {
  each_step_fails("take over", [](fixture& f) { f.store->take_over(2000, 1000000); });
}

TEST_F(fail_matrix_test, renew) {
  each_step_fails("renew", [](fixture& f) { f.store->renew({f.procedure}, 2000, lease_ms); });
}

TEST_F(fail_matrix_test, replay) {
  each_step_fails("replay", [](fixture& f) { f.store->replay("", "fixed", "it-staff", false, 2000); });
}

TEST_F(fail_matrix_test, release_owner) {
  each_step_fails("release owner", [](fixture& f) { f.store->release_owner(f.owner, 2000); });
}

// The store busy past its timeout (another process holds the write lock): the write fails as
// "busy" after the bounded retries, each reported, and the next write works once the lock is gone.
TEST_F(sqlite_outbox_test, a_busy_store_fails_as_busy_reports_each_wait_and_recovers) {
  std::vector<int> waits;
  connector::sqlite_options options;
  options.busy_timeout_ms = 50;
  options.on_busy = [&](std::string_view, int attempt) { waits.push_back(attempt); };
  sqlite_outbox store(path_, options);
  {
    sqlite::database other(path_);
    other.exec("BEGIN IMMEDIATE");
    try {
      store.enqueue({record("A-1", 1, "a")}, {}, 1000);
      ADD_FAILURE() << "the write went through a held lock";
    } catch (const store_error& e) {
      EXPECT_EQ(e.failure, store_error::kind::busy);
    }
    EXPECT_EQ(waits, (std::vector<int>{1, 2, 3}));
    EXPECT_EQ(store.busy_waits(), 3);
    other.exec("ROLLBACK");
  }
  EXPECT_EQ(store.enqueue({record("A-1", 1, "a")}, {}, 1000), std::vector<enqueue_result>{enqueue_result::accepted});
}

// ---- schema versions ----

TEST_F(sqlite_outbox_test, a_version_5_store_is_migrated_with_its_records) {
  {
    sqlite::database db(path_);
    db.exec("PRAGMA journal_mode = WAL");
    db.exec(R"sql(
      CREATE TABLE records (seq INTEGER PRIMARY KEY AUTOINCREMENT, record_id TEXT NOT NULL, revision INTEGER NOT NULL,
        record_type TEXT NOT NULL, patient_key TEXT NOT NULL, body TEXT NOT NULL, state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at INTEGER, last_error TEXT, ehr_response TEXT,
        received_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, UNIQUE (record_id, revision));
      CREATE TABLE lanes (patient_key TEXT PRIMARY KEY, head_seq INTEGER, ready_at INTEGER);
      INSERT INTO records (record_id, revision, record_type, patient_key, body, state, attempts, received_at, updated_at)
        VALUES ('A-1', 1, 'procedure', 'a', '{}', 'in_flight', 1, 1000, 1000),
               ('A-2', 1, 'procedure', 'a', '{}', 'pending', 0, 1000, 1000);
      INSERT INTO lanes VALUES ('a', 1, NULL);
      PRAGMA user_version = 5;)sql");
  }
  sqlite_outbox store(path_);
  sqlite::database db(path_);
  sqlite::statement v(db.handle(), "PRAGMA user_version");
  ASSERT_TRUE(v.step());
  EXPECT_EQ(v.column_int(0), connector::sqlite_schema_version);
  // The record an old process left in flight has no owner: taken back at once, possibly at the EHR.
  EXPECT_EQ(store.take_over(2000, 1000000).size(), 1u);
  const std::int64_t me = store.register_owner("sync", 2000);
  const auto c = store.claim(me, 2000, 60000, 1);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].record_id, "A-1");
}

// Found in review: a version-5 connector opening this store writes user_version = 5 again; the
// next open must migrate without tripping over the columns already there.
TEST_F(sqlite_outbox_test, an_older_connector_setting_the_version_back_does_not_break_the_store) {
  {
    sqlite_outbox store(path_);
    store.enqueue({record("A-1", 1, "a")}, {}, 1000);
  }
  {
    sqlite::database db(path_);
    db.exec("PRAGMA user_version = 5");
  }
  sqlite_outbox store(path_);
  EXPECT_EQ(store.status(1000).records.at(record_state::pending), 1);
}

TEST_F(sqlite_outbox_test, a_store_from_a_newer_version_is_refused) {
  {
    sqlite_outbox store(path_);
  }
  {
    sqlite::database db(path_);
    db.exec("PRAGMA user_version = 99");
  }
  try {
    sqlite_outbox store(path_);
    FAIL() << "a newer store was opened";
  } catch (const store_error& e) {
    EXPECT_NE(std::string(e.what()).find("schema version 99, newer than this connector's"), std::string::npos) << e.what();
  }
}

}  // namespace
