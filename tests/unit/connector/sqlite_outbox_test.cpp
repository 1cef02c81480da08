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
  EXPECT_THROW(sqlite_outbox((dir_ / "missing-folder" / "outbox.db").string()), sqlite::sqlite_error);
}

}  // namespace

namespace {

using connector::attempt_report;
using result = attempt_report::result;

class lanes_test : public sqlite_outbox_test {
 protected:
  void SetUp() override {
    sqlite_outbox_test::SetUp();
    store_ = std::make_unique<sqlite_outbox>(path_);
  }
  std::vector<std::string> claim_ids(std::int64_t now, int limit = 100) {
    std::vector<std::string> ids;
    for (const auto& c : store_->claim(now, limit)) ids.push_back(c.record_id);
    return ids;
  }
  connector::claimed_record claim_one(std::int64_t now) {
    auto c = store_->claim(now, 1);
    EXPECT_EQ(c.size(), 1u);
    return c.empty() ? connector::claimed_record{} : c[0];
  }
  std::unique_ptr<sqlite_outbox> store_;
};

TEST_F(lanes_test, one_record_per_patient_at_a_time_in_arrival_order) {
  store_->enqueue({record("A-1", 1, "a"), record("B-1", 1, "b"), record("A-2", 1, "a")}, {}, 1000);
  EXPECT_EQ(claim_ids(1000), (std::vector<std::string>{"A-1", "B-1"}));
  EXPECT_TRUE(claim_ids(1000).empty());  // both lanes are in flight
}

TEST_F(lanes_test, delivery_moves_the_lane_on) {
  store_->enqueue({record("A-1", 1, "a"), record("A-2", 1, "a")}, {}, 1000);
  const auto first = claim_one(1000);
  store_->settle(first, {result::delivered, 0, "", "{\"resourceType\":\"Bundle\"}"}, 2000);
  const auto second = claim_one(2000);
  EXPECT_EQ(second.record_id, "A-2");
  EXPECT_EQ(second.attempts, 1);
  EXPECT_EQ(store_->delivered_bodies("a").size(), 1u);
}

TEST_F(lanes_test, a_retry_holds_back_only_its_patient_until_its_time) {
  store_->enqueue({record("A-1", 1, "a"), record("A-2", 1, "a"), record("B-1", 1, "b")}, {}, 1000);
  const auto a = store_->claim(1000, 1).at(0);
  store_->settle(a, {result::retry, 5000, "HTTP 503: will retry", ""}, 1000);
  EXPECT_EQ(claim_ids(1000), std::vector<std::string>{"B-1"});  // A-2 waits behind A-1
  EXPECT_TRUE(claim_ids(4999).empty());
  const auto again = claim_one(5000);
  EXPECT_EQ(again.record_id, "A-1");
  EXPECT_EQ(again.attempts, 2);
  EXPECT_EQ(store_->status(5000).last_error, "HTTP 503: will retry");
}

TEST_F(lanes_test, a_dead_letter_does_not_block_its_patient) {
  store_->enqueue({record("A-1", 1, "a"), record("A-2", 1, "a")}, {}, 1000);
  store_->settle(claim_one(1000), {result::dead, 0, "HTTP 422: the EHR refused the record", "{}"}, 1000);
  EXPECT_EQ(claim_ids(1000), std::vector<std::string>{"A-2"});
  EXPECT_EQ(store_->status(1000).records.at(record_state::dead), 1);
}

TEST_F(lanes_test, a_held_follow_up_steps_aside_and_returns_when_a_procedure_is_delivered) {
  store_->enqueue({record("F-1", 1, "a"), record("P-1", 1, "a")}, {}, 1000);
  store_->settle(claim_one(1000), {result::held, 0, "waits for procedure P-1", ""}, 1000);
  const auto procedure = claim_one(1000);
  EXPECT_EQ(procedure.record_id, "P-1");
  EXPECT_EQ(store_->status(1000).records.at(record_state::held), 1);
  store_->settle(procedure, {result::delivered, 0, "", "{}"}, 2000);
  const auto follow_up = claim_one(2000);
  EXPECT_EQ(follow_up.record_id, "F-1");
  EXPECT_EQ(follow_up.attempts, 1);  // waiting was not an attempt
}

TEST_F(lanes_test, records_in_flight_at_a_crash_are_sent_again) {
  store_->enqueue({record("A-1", 1, "a")}, {}, 1000);
  claim_one(1000);
  store_ = std::make_unique<sqlite_outbox>(path_);  // the process died and came back
  EXPECT_TRUE(claim_ids(2000).empty());
  EXPECT_EQ(store_->recover_in_flight(2000), 1);
  const auto again = claim_one(2000);
  EXPECT_EQ(again.record_id, "A-1");
  EXPECT_EQ(again.attempts, 2);
}

TEST_F(lanes_test, a_released_record_was_not_attempted) {
  store_->enqueue({record("A-1", 1, "a")}, {}, 1000);
  store_->settle(claim_one(1000), {result::released, 60000, "delivery paused", ""}, 1000);
  EXPECT_TRUE(claim_ids(59999).empty());
  EXPECT_EQ(claim_one(60000).attempts, 1);
}

TEST_F(lanes_test, a_newer_revision_replaces_a_waiting_one_in_its_lane) {
  store_->enqueue({record("A-1", 1, "a")}, {}, 1000);
  store_->settle(claim_one(1000), {result::retry, 5000, "timed out: will retry", ""}, 1000);
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

}  // namespace

namespace {

TEST_F(lanes_test, replay_requeues_dead_letters_and_records_who_and_why) {
  store_->enqueue({record("A-1", 1, "a"), record("B-1", 1, "b")}, {}, 1000);
  for (const auto& c : store_->claim(1000, 2)) {
    store_->settle(c, {result::dead, 0, "HTTP 422: the EHR refused the record", "{}"}, 1000);
  }
  const auto dry = store_->replay("A-1", "fixed the code table", "it-staff", true, 2000);
  ASSERT_EQ(dry.size(), 1u);
  EXPECT_EQ(dry[0].last_error, "HTTP 422: the EHR refused the record");
  EXPECT_TRUE(claim_ids(2000).empty());  // a dry run changes nothing

  EXPECT_EQ(store_->replay("", "EHR fixed", "it-staff", false, 3000).size(), 2u);
  const auto again = store_->claim(3000, 10);
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

}  // namespace
