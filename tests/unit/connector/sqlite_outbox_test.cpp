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

// SQLite only: one daemon per store (PostgreSQL stores take several; outbox_contract_test.cpp).
TEST_F(sqlite_outbox_test, one_daemon_per_store_and_its_pid_named) {

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
