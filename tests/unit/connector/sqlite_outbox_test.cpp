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
