// The outbox contract, run against both stores: lanes, claims, leases, fencing, take-over,
// "possibly at the EHR". SQLite on a file of its own per test; PostgreSQL in a schema of its own
// per test, on the throwaway cluster ctest starts (tests/pg/cluster.sh, MIGRAINE_TEST_PG_DIR).
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <map>
#include <mutex>
#include <thread>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "connector/outbox/postgresql_outbox.h"
#include "connector/outbox/sqlite_outbox.h"

namespace {

namespace fs = std::filesystem;
using namespace connector;

}  // namespace

namespace {

using connector::attempt_report;
using result = attempt_report::result;

constexpr std::int64_t lease = 60000;

// Run once per store: every lane test holds for SQLite and for PostgreSQL alike.
class lanes_test : public testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    name_ = std::string("t") + std::to_string(::getpid()) + "_" +
            testing::UnitTest::GetInstance()->current_test_info()->name();
    for (auto& c : name_) c = std::isalnum(static_cast<unsigned char>(c)) ? static_cast<char>(std::tolower(c)) : '_';
    name_ = name_.substr(0, 60);
    if (GetParam() == "sqlite") {
      dir_ = fs::temp_directory_path() / ("outbox-contract-" + name_);
      fs::remove_all(dir_);
      fs::create_directories(dir_);
    } else {
      const char* cluster = std::getenv("MIGRAINE_TEST_PG_DIR");
      ASSERT_TRUE(cluster) << "MIGRAINE_TEST_PG_DIR is not set: run through ctest, which starts tests/pg/cluster.sh";
      conninfo_ = read_line(std::string(cluster) + "/conninfo");
      password_ = read_line(std::string(cluster) + "/password");
      admin_ = std::make_unique<postgresql::connection>(conninfo_, password_);
      admin_->run("DROP SCHEMA IF EXISTS " + name_ + " CASCADE; CREATE SCHEMA " + name_);
    }
    store_ = open_store();
    owner_ = store_->register_owner("sync", 1000);
  }
  void TearDown() override {
    store_.reset();
    if (admin_) admin_->run("DROP SCHEMA IF EXISTS " + name_ + " CASCADE");
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  // Another connection to the same store: another process, as far as the store can tell.
  std::unique_ptr<outbox> open_store() {
    if (GetParam() == "sqlite") return std::make_unique<sqlite_outbox>((dir_ / "outbox.db").string());
    return std::make_unique<postgresql_outbox>(postgresql_options{conninfo_ + " options='-csearch_path=" + name_ + "'",
                                                                  password_, 2000, 3, {}, "instance-" + std::to_string(++opened_)});
  }
  // The first row of a query on the store's own tables, as text.
  std::vector<std::string> first_row(const std::string& sql, int columns) {
    std::vector<std::string> row;
    if (GetParam() == "sqlite") {
      sqlite::database db((dir_ / "outbox.db").string());
      sqlite::statement q(db.handle(), sql);
      if (q.step()) {
        for (int i = 0; i < columns; ++i) row.push_back(q.column_text(i));
      }
      return row;
    }
    admin_->run("SET search_path = " + name_);
    const auto r = admin_->exec("q" + std::to_string(++queries_), sql);
    for (int i = 0; !r.empty() && i < columns; ++i) row.push_back(r.text(0, i));
    return row;
  }

  // What a second instance registers as: SQLite takes one daemon, beside which sync --once runs.
  std::string instance_kind() const { return GetParam() == "sqlite" ? "sync" : "daemon"; }
  static inbound_record record(std::string id, int revision, std::string patient = "p-1") {
    return {std::move(id), revision, "procedure", std::move(patient), "{\"record_id\":\"x\"}"};
  }
  static std::string read_line(const std::string& path) {
    std::ifstream in(path);
    std::string line;
    std::getline(in, line);
    return line;
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

  std::string name_, conninfo_, password_;
  fs::path dir_;
  std::unique_ptr<postgresql::connection> admin_;
  std::unique_ptr<outbox> store_;
  std::int64_t owner_ = 0;
  int queries_ = 0;
  int opened_ = 0;
};

TEST_P(lanes_test, one_record_per_patient_at_a_time_in_arrival_order) {
  store_->enqueue({record("A-1", 1, "a"), record("B-1", 1, "b"), record("A-2", 1, "a")}, {}, 1000);
  EXPECT_EQ(claim_ids(1000), (std::vector<std::string>{"A-1", "B-1"}));
  EXPECT_TRUE(claim_ids(1000).empty());  // both lanes are in flight
}

TEST_P(lanes_test, delivery_moves_the_lane_on) {
  store_->enqueue({record("A-1", 1, "a"), record("A-2", 1, "a")}, {}, 1000);
  const auto first = claim_one(1000);
  EXPECT_TRUE(store_->settle(first, {result::delivered, 0, "", "{\"resourceType\":\"Bundle\"}", false, std::nullopt}, 2000));
  const auto second = claim_one(2000);
  EXPECT_EQ(second.record_id, "A-2");
  EXPECT_EQ(second.attempts, 1);
  EXPECT_EQ(store_->history("a", second.seq).size(), 1u);  // A-1, delivered
}

TEST_P(lanes_test, a_retry_holds_back_only_its_patient_until_its_time) {
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

TEST_P(lanes_test, a_dead_letter_does_not_block_its_patient) {
  store_->enqueue({record("A-1", 1, "a"), record("A-2", 1, "a")}, {}, 1000);
  store_->settle(claim_one(1000), {result::dead, 0, "HTTP 422: the EHR refused the record", "{}", false, std::nullopt}, 1000);
  EXPECT_EQ(claim_ids(1000), std::vector<std::string>{"A-2"});
  EXPECT_EQ(store_->status(1000).records.at(record_state::dead), 1);
}

TEST_P(lanes_test, a_held_follow_up_steps_aside_and_returns_when_a_procedure_is_delivered) {
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

TEST_P(lanes_test, a_released_record_was_not_attempted) {
  store_->enqueue({record("A-1", 1, "a")}, {}, 1000);
  store_->settle(claim_one(1000), {result::released, 60000, "delivery paused", "", false, std::nullopt}, 1000);
  EXPECT_TRUE(claim_ids(59999).empty());
  EXPECT_EQ(claim_one(60000).attempts, 1);
}

TEST_P(lanes_test, a_newer_revision_replaces_a_waiting_one_in_its_lane) {
  store_->enqueue({record("A-1", 1, "a")}, {}, 1000);
  store_->settle(claim_one(1000), {result::retry, 5000, "timed out: will retry", "", false, std::nullopt}, 1000);
  store_->enqueue({record("A-1", 2, "a")}, {}, 2000);
  const auto c = claim_one(2000);  // revision 2 is ready now; revision 1 will never be sent
  EXPECT_EQ(c.revision, 2);
  EXPECT_EQ(store_->status(2000).records.at(record_state::superseded), 1);
}

TEST_P(lanes_test, waiting_lanes_keep_their_place_when_more_records_arrive) {
  store_->enqueue({record("A-1", 1, "a")}, {}, 1000);
  store_->enqueue({record("B-1", 1, "b")}, {}, 2000);
  store_->enqueue({record("A-2", 1, "a")}, {}, 3000);  // must not push lane a behind lane b
  EXPECT_EQ(claim_ids(3000, 1), std::vector<std::string>{"A-1"});
}

TEST_P(lanes_test, replay_requeues_dead_letters_and_records_who_and_why) {
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
  const auto audit = first_row("SELECT record_id, reason, requested_by, previous_error FROM replays ORDER BY id", 4);
  EXPECT_EQ(audit, (std::vector<std::string>{"A-1", "EHR fixed", "it-staff", "HTTP 422: the EHR refused the record"}));
  EXPECT_TRUE(store_->replay("A-1", "again", "it-staff", false, 4000).empty());  // no longer dead
}

// ---- claims: owners, leases, fencing, take-over ----

TEST_P(lanes_test, a_claim_carries_its_owner_and_a_new_token_each_time) {
  store_->enqueue({record("A-1", 1, "a")}, {}, 1000);
  const auto first = claim_one(1000);
  EXPECT_EQ(first.owner, owner_);
  store_->settle(first, {result::released, 1000, "not sent", "", false, std::nullopt}, 1000);
  const auto second = claim_one(1000);
  EXPECT_GT(second.token, first.token);
}

TEST_P(lanes_test, a_settle_with_a_stale_token_is_refused_and_changes_nothing) {
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

TEST_P(lanes_test, a_live_holders_claims_are_not_taken_before_their_lease_runs_out) {
  store_->enqueue({record("A-1", 1, "a")}, {}, 1000);
  const auto c = claim_one(1000);
  auto other_store = open_store();  // another process's connection
  auto& other = *other_store;
  EXPECT_TRUE(other.take_over(1000 + lease - 1, 1000000).empty());
  const std::int64_t other_owner = other.register_owner("sync", 1000);
  EXPECT_TRUE(other.claim(other_owner, 2000, lease, 10).empty()) << "the lane is held";
  EXPECT_EQ(store_->renew({c}, 50000, lease), std::vector<std::int64_t>{});
  EXPECT_TRUE(other.take_over(1000 + lease + 1, 1000000).empty()) << "renewed until 110000";
  EXPECT_EQ(other.take_over(50000 + lease, 1000000).size(), 1u);
  EXPECT_EQ(store_->renew({c}, 120000, lease), std::vector<std::int64_t>{c.seq}) << "taken over: renewal fails";
}

TEST_P(lanes_test, a_dead_holders_claims_are_taken_back_at_once_and_marked_possibly_delivered) {
  store_->enqueue({record("A-1", 1, "a")}, {}, 1000);
  claim_one(1000);
  store_.reset();  // the process died: the kernel released its owner lock
  auto other_store = open_store();
  auto& other = *other_store;
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

TEST_P(lanes_test, own_claims_are_never_taken_for_a_dead_holders) {
  store_->enqueue({record("A-1", 1, "a")}, {}, 1000);
  claim_one(1000);
  EXPECT_TRUE(store_->take_over(1001, 1000000).empty()) << "this object's own owner lock is not another's";
}

TEST_P(lanes_test, a_clean_exit_returns_its_claims_and_leaves_no_owner) {
  store_->enqueue({record("A-1", 1, "a")}, {}, 1000);
  claim_one(1000);
  store_->release_owner(owner_, 2000);
  const auto s = store_->status(2000);
  EXPECT_EQ(s.records.at(record_state::in_flight), 0);
  EXPECT_EQ(s.maybe_at_ehr, 1);
  EXPECT_TRUE(s.owners.empty());
}

TEST_P(lanes_test, status_names_the_processes_and_what_each_holds) {
  store_->enqueue({record("A-1", 1, "a"), record("B-1", 1, "b")}, {}, 1000);
  claim_ids(1000);
  const auto s = store_->status(1000);
  ASSERT_EQ(s.owners.size(), 1u);
  EXPECT_EQ(s.owners[0].kind, "sync");
  EXPECT_EQ(s.owners[0].pid, ::getpid());
  EXPECT_TRUE(s.owners[0].alive);
  EXPECT_EQ(s.owners[0].claims, 2);
}

TEST_P(lanes_test, a_lane_due_beyond_the_horizon_is_due_now_after_the_clock_stepped_back) {
  store_->enqueue({record("A-1", 1, "a")}, {}, 1000);
  // Scheduled an hour ahead by a clock that was an hour fast, then set right.
  store_->settle(claim_one(1000), {result::retry, 1000 + 3600000, "HTTP 503", "", false, std::nullopt}, 1000);
  EXPECT_TRUE(claim_ids(2000).empty());
  store_->take_over(2000, 11 * 60000);  // nothing the connector sets waits longer than 11 minutes
  EXPECT_EQ(claim_ids(2000), std::vector<std::string>{"A-1"});
}

// Found in review: a revision naming another patient left the superseded one claimable in the
// first patient's lane, so two revisions of one record could be in flight at once.
TEST_P(lanes_test, a_record_never_moves_between_patients) {
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
TEST_P(lanes_test, a_replayed_dead_letter_waits_while_its_patient_has_a_record_in_flight) {
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

TEST_P(lanes_test, own_claims_held_are_not_taken_back_even_when_their_lease_looks_run_out) {
  store_->enqueue({record("A-1", 1, "a")}, {}, 1000);
  const auto c = claim_one(1000);
  // The wall clock jumped an hour ahead: the lease looks long gone, but this object knows it holds it.
  EXPECT_TRUE(store_->take_over(1000 + 3600000, 1000000, {c}).empty());
  EXPECT_TRUE(store_->settle(c, {result::delivered, 0, "", "[]", false, std::nullopt}, 1000 + 3600000));
}

TEST_P(lanes_test, own_claims_not_held_come_back_once_their_lease_ran_out) {
  store_->enqueue({record("A-1", 1, "a")}, {}, 1000);
  claim_one(1000);  // a claim whose commit the caller could not confirm: it does not know it holds it
  EXPECT_TRUE(store_->take_over(1000 + lease - 1, 1000000, {}).empty()) << "not before the lease ran out";
  EXPECT_EQ(store_->take_over(1000 + lease, 1000000, {}).size(), 1u);
}

// ---- "possibly at the EHR" ----

TEST_P(lanes_test, an_unanswered_revision_joins_the_history_of_its_amendment) {
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

TEST_P(lanes_test, a_revision_never_sent_stays_out_of_the_history) {
  store_->enqueue({record("A-1", 1, "a")}, {}, 1000);
  store_->settle(claim_one(1000), {result::retry, 5000, "connect: refused", "", false, std::nullopt}, 1000);
  store_->enqueue({record("A-1", 2, "a")}, {}, 2000);
  const auto r2 = claim_one(2000);
  EXPECT_TRUE(store_->history("a", r2.seq).empty());
}

TEST_P(lanes_test, a_settle_notes_the_ehr_contact_in_the_same_transaction) {
  store_->enqueue({record("A-1", 1, "a")}, {}, 1000);
  store_->settle(claim_one(1000), {result::delivered, 0, "", "[]", false, connector::ehr_contact{true, "HTTP 200"}}, 1500);
  const auto s = store_->status(1600);
  EXPECT_TRUE(s.ehr_reached);
  EXPECT_EQ(s.ehr_detail, "HTTP 200");
  EXPECT_EQ(s.ehr_last_contact_ms, 1500);
}



// ---- several instances on one store ----

// Two instances claiming and settling at once, each on its own connection: every record is
// delivered once, and each patient's records in the order they arrived.
TEST_P(lanes_test, two_instances_at_once_deliver_each_record_once_in_order_per_patient) {
  std::vector<inbound_record> batch;
  for (int n = 0; n < 3; ++n) {
    for (int p = 0; p < 40; ++p) batch.push_back(record("R-" + std::to_string(p) + "-" + std::to_string(n), 1, "p" + std::to_string(p)));
  }
  store_->enqueue(batch, {}, 1000);
  std::mutex m;
  std::map<std::string, std::vector<std::string>> delivered;  // patient -> record ids in delivery order
  int twice = 0;
  auto instance = [&] {
    auto mine = open_store();
    const std::int64_t me = mine->register_owner(instance_kind(), 1000);
    for (int idle = 0; idle < 3;) {
      const auto claims = mine->claim(me, 2000, lease, 7);
      if (claims.empty()) {
        ++idle;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        continue;
      }
      idle = 0;
      for (const auto& c : claims) {
        {
          std::lock_guard lock(m);
          auto& lane = delivered[c.patient_key];
          if (std::find(lane.begin(), lane.end(), c.record_id) != lane.end()) ++twice;
          lane.push_back(c.record_id);
        }
        EXPECT_TRUE(mine->settle(c, {result::delivered, 0, "", "[]", false, std::nullopt}, 2000));
      }
    }
    mine->release_owner(me, 3000);
  };
  std::thread a(instance), b(instance);
  a.join();
  b.join();
  EXPECT_EQ(twice, 0);
  ASSERT_EQ(delivered.size(), 40u);
  for (const auto& [patient, ids] : delivered) {
    const std::string p = patient.substr(1);
    EXPECT_EQ(ids, (std::vector<std::string>{"R-" + p + "-0", "R-" + p + "-1", "R-" + p + "-2"})) << patient;
  }
  EXPECT_EQ(store_->status(3000).records.at(record_state::delivered), 120);
}

TEST_P(lanes_test, an_instance_frozen_past_its_lease_is_taken_over_and_its_late_settle_changes_nothing) {
  store_->enqueue({record("A-1", 1, "a"), record("A-2", 1, "a")}, {}, 1000);
  const auto frozen = claim_one(1000);  // then SIGSTOP: alive, silent
  auto other_store = open_store();
  const std::int64_t other = other_store->register_owner(instance_kind(), 1000);
  EXPECT_TRUE(other_store->take_over(1000 + lease - 1, 1000000).empty()) << "alive and within its lease";
  ASSERT_EQ(other_store->take_over(1000 + lease, 1000000).size(), 1u);
  const auto again = other_store->claim(other, 1000 + lease, lease, 10);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].record_id, "A-1");
  EXPECT_TRUE(other_store->settle(again[0], {result::delivered, 0, "", "[]", false, std::nullopt}, 70000));
  // SIGCONT: its answer arrives late and is refused; the lane goes on from the current holder.
  EXPECT_FALSE(store_->settle(frozen, {result::dead, 0, "late", "{}", false, std::nullopt}, 71000));
  EXPECT_FALSE(store_->ledger_record(frozen, {{"Procedure", "s", "v"}, "A-1", "1", "1", 0}, 71000));
  EXPECT_EQ(store_->status(71000).records.at(record_state::dead), 0);
  EXPECT_EQ(claim_ids(71000), std::vector<std::string>{"A-2"});
}

// Two instances storing revisions of the same records for two patients at once: each record ends
// up one patient's (the later revision refused as another patient's), never in two lanes.
TEST_P(lanes_test, revisions_stored_at_once_by_two_instances_never_split_a_record_between_patients) {
  auto run = [&](int revision, std::string patient) {
    auto mine = open_store();
    for (int i = 0; i < 60; ++i) mine->enqueue({record("R-" + std::to_string(i), revision, patient)}, {}, 1000);
  };
  std::thread a(run, 1, "a"), b(run, 2, "b");
  a.join();
  b.join();
  for (int i = 0; i < 60; ++i) {
    const auto revisions = store_->record_history("R-" + std::to_string(i));
    ASSERT_EQ(revisions.size(), 1u) << "R-" << i << ": one revision stored, the other refused";
  }
  EXPECT_EQ(store_->status(1000).quarantined, 60);
}

// PostgreSQL is for several instances on one queue; a SQLite store takes one daemon.
TEST_P(lanes_test, a_postgresql_store_takes_several_daemons_a_sqlite_store_one) {
  auto a = open_store(), b = open_store();
  EXPECT_NO_THROW(a->register_owner("daemon", 1000));
  if (GetParam() == "sqlite") {
    EXPECT_THROW(b->register_owner("daemon", 1000), store_error);
    return;
  }
  EXPECT_NO_THROW(b->register_owner("daemon", 1000));
  const auto owners = store_->status(1000).owners;
  ASSERT_EQ(owners.size(), 3u);
  for (const auto& o : owners) {
    EXPECT_TRUE(o.alive);
    EXPECT_FALSE(o.host.empty()) << "each instance names its machine";
  }
}

// One instance evaluates and posts the alerts: the lease on the "alerts" role. SQLite has one
// daemon, which always leads.
TEST_P(lanes_test, one_instance_leads_the_alerts_and_a_killed_leader_hands_over_at_once) {
  auto a = open_store(), b = open_store();
  const auto ida = a->register_owner("daemon", 1000);
  if (GetParam() == "sqlite") {
    EXPECT_TRUE(a->lead("alerts", ida, 1000, 15000));
    return;
  }
  const auto idb = b->register_owner("daemon", 1000);
  EXPECT_TRUE(a->lead("alerts", ida, 1000, 15000));
  EXPECT_FALSE(b->lead("alerts", idb, 1000, 15000)) << "a leads, for 15 s";
  EXPECT_TRUE(a->lead("alerts", ida, 2000, 15000)) << "the leader renews";
  EXPECT_FALSE(b->lead("alerts", idb, 2000, 15000));
  const auto leaders = [&] {
    std::vector<std::int64_t> ids;
    for (const auto& o : store_->status(2000).owners) {
      if (std::find(o.leads.begin(), o.leads.end(), "alerts") != o.leads.end()) ids.push_back(o.id);
    }
    return ids;
  };
  EXPECT_EQ(leaders(), std::vector<std::int64_t>{ida}) << "status names the leader";
  a.reset();  // its session ends, as when its process is killed: no waiting for its lease
  bool leads = false;  // once the server has ended the session (it does so on its own time)
  for (int i = 0; i < 100 && !(leads = b->lead("alerts", idb, 3000, 15000)); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(leads) << "within 5 s, far less than the 15 s lease";
  EXPECT_EQ(leaders(), std::vector<std::int64_t>{idb});
}

TEST_P(lanes_test, a_leader_whose_lease_ran_out_loses_the_lead_and_a_clean_exit_hands_it_over) {
  if (GetParam() == "sqlite") GTEST_SKIP() << "one daemon per SQLite store: it always leads";
  auto a = open_store(), b = open_store();
  const auto ida = a->register_owner("daemon", 1000), idb = b->register_owner("daemon", 1000);
  EXPECT_TRUE(a->lead("alerts", ida, 1000, 1));  // a lease of 1 ms, on the server's clock: a frozen leader
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_TRUE(b->lead("alerts", idb, 1000, 15000));
  EXPECT_FALSE(a->lead("alerts", ida, 1000, 15000)) << "the frozen leader, back, learns it no longer leads";
  b->release_owner(idb, 2000);
  EXPECT_TRUE(a->lead("alerts", ida, 2000, 15000)) << "a clean exit hands the lead over at once";
}

TEST_P(lanes_test, status_shows_each_instances_leases_and_the_conditions_it_alone_sees) {
  store_->enqueue({record("A-1", 1, "a")}, {}, 1000);
  const auto c = claim_one(1000);
  store_->note_owner_conditions(owner_, {{"sync_log_unwritable", "the sync log cannot be written", 1000}});
  const auto owners = store_->status(1000).owners;
  ASSERT_EQ(owners.size(), 1u);
  ASSERT_TRUE(owners[0].lease_until_ms.has_value());
  EXPECT_EQ(*owners[0].lease_until_ms, c.lease_until_ms);
  if (GetParam() == "postgresql") {
    ASSERT_EQ(owners[0].conditions.size(), 1u) << "published for the alerts' leader";
    EXPECT_EQ(owners[0].conditions[0].key, "sync_log_unwritable");
    EXPECT_EQ(owners[0].conditions[0].detail, "the sync log cannot be written");
  }
}

TEST_P(lanes_test, an_inbox_file_is_held_by_one_instance_at_a_time) {
  auto a = open_store(), b = open_store();
  EXPECT_TRUE(a->hold_intake_file("visit.ndjson"));
  EXPECT_EQ(b->hold_intake_file("visit.ndjson"), GetParam() == "sqlite") << "SQLite: one daemon, which holds all";
  EXPECT_TRUE(b->hold_intake_file("other.ndjson"));
  a->release_intake_file("visit.ndjson");
  EXPECT_TRUE(b->hold_intake_file("visit.ndjson"));
  b->release_intake_file("visit.ndjson");
  b.reset();  // a process that ends lets go of what it held (once the server has ended its session)
  bool held = false;
  for (int i = 0; i < 100 && !(held = a->hold_intake_file("other.ndjson")); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(held);
}

// Record ids are the sender's: quotes, backslashes, commas and braces are ids like any other.
TEST_P(lanes_test, record_ids_with_quotes_backslashes_and_braces_are_stored_and_recognised) {
  const std::string odd = "R\"1\\2,{3} NULL";
  EXPECT_EQ(store_->enqueue({record(odd, 1, "a"), record("plain", 1, "b")}, {}, 1000),
            (std::vector<enqueue_result>{enqueue_result::accepted, enqueue_result::accepted}));
  EXPECT_EQ(store_->enqueue({record(odd, 1, "a"), record(odd, 2, "a"), record(odd, 1, "a")}, {}, 2000),
            (std::vector<enqueue_result>{enqueue_result::duplicate, enqueue_result::accepted_superseding,
                                         enqueue_result::stale}));
  EXPECT_EQ(store_->enqueue({record(odd, 3, "b")}, {}, 3000), std::vector<enqueue_result>{enqueue_result::other_patient});
  EXPECT_EQ(claim_ids(3000), (std::vector<std::string>{"plain", odd}));
}

// A rejected file may be anything: not UTF-8, NULs inside. It is kept like any other.
TEST_P(lanes_test, a_rejected_record_that_is_not_text_is_quarantined_whole) {
  const std::string body("{\"record_id\":\"Q\xff\"}\0\xc3", 20);
  const fhir::issues problems = {{fhir::severity::error, "structure", "record", "is not valid UTF-8 text"}};
  EXPECT_NO_THROW(store_->enqueue({record("A-1", 1, "a")}, {{"inbox:0123456789ab", "Q\xff", body, problems}}, 1000));
  EXPECT_EQ(store_->status(1000).quarantined, 1);
  EXPECT_EQ(store_->status(1000).records.at(record_state::pending), 1) << "the batch's good record is stored with it";
  ASSERT_EQ(store_->quarantined(10).size(), 1u);
  EXPECT_EQ(store_->quarantined(10)[0].record_id.substr(0, 1), "Q");
}

// Instances see the EHR each on their own: an outage starts at the first failure since any of
// them last reached it, never at an old failure of an instance that since went away.
TEST_P(lanes_test, an_outage_starts_no_earlier_than_any_instances_last_success) {
  if (GetParam() == "sqlite") GTEST_SKIP() << "one daemon: one row of EHR contact";
  {
    auto gone = open_store();
    gone->note_ehr_contact({false, "connect: Connection refused"}, 1000);  // then its process ends
  }
  auto a = open_store(), b = open_store();
  a->note_ehr_contact({true, "HTTP 200"}, 2000);
  b->note_ehr_contact({true, "HTTP 200"}, 3000);
  a->note_ehr_contact({false, "connect: Connection refused"}, 5000);
  auto s = store_->status(5000);
  EXPECT_FALSE(s.ehr_reached);
  ASSERT_TRUE(s.ehr_unreachable_since_ms.has_value());
  EXPECT_EQ(*s.ehr_unreachable_since_ms, 5000) << "not 1000: the EHR was reached at 3000";
  b->note_ehr_contact({false, "connect: Connection refused"}, 6000);
  s = store_->status(6000);
  ASSERT_TRUE(s.ehr_unreachable_since_ms.has_value());
  EXPECT_EQ(*s.ehr_unreachable_since_ms, 5000) << "the first of the failures since";
}

// A database an earlier release created (schema version 1) is migrated in place, its records kept.
TEST_P(lanes_test, a_version_1_database_is_migrated_with_its_records) {
  if (GetParam() == "sqlite") GTEST_SKIP() << "the SQLite store's migrations have tests of their own";
  store_->enqueue({record("A-1", 1, "a")}, {{"inbox:0123456789ab", "Q-1", "{\"record_id\":\"Q-1\"}", {}}}, 1000);
  store_->note_ehr_contact({true, "HTTP 200"}, 1500);
  store_->release_owner(owner_, 2000);
  store_.reset();
  auto old_release = open_store();  // an instance of the older release, still running
  old_release->register_owner("daemon", 2000);
  // Version 1 as it was: no leases, no published conditions, quarantined bodies as text.
  admin_->run("SET search_path = " + name_ + "; DROP TABLE leases; ALTER TABLE owners DROP COLUMN conditions; "
              "ALTER TABLE ehr_contact DROP COLUMN reached_at; "
              "ALTER TABLE quarantine ALTER COLUMN body TYPE TEXT USING convert_from(body, 'UTF8'); "
              "UPDATE meta SET value = '1' WHERE key = 'schema_version'");
  const postgresql_options options{conninfo_ + " options='-csearch_path=" + name_ + "'", password_, 2000, 3, {}, {}};
  try {
    postgresql_outbox refused(options);
    ADD_FAILURE() << "migrated beside a running instance of the older release";
  } catch (const store_error& e) {
    EXPECT_NE(std::string(e.what()).find("stop every instance"), std::string::npos) << e.what();
  }
  old_release.reset();  // stopped: its session ends (on the server's time)
  std::unique_ptr<postgresql_outbox> migrated;
  for (int i = 0; i < 100 && !migrated; ++i) {
    try {
      migrated = std::make_unique<postgresql_outbox>(options);
    } catch (const store_error&) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  ASSERT_TRUE(migrated);
  EXPECT_EQ(migrated->schema_version(), postgresql_schema_version);
  EXPECT_EQ(first_row("SELECT encode(body, 'escape') FROM quarantine", 1), std::vector<std::string>{"{\"record_id\":\"Q-1\"}"});
  EXPECT_EQ(migrated->status(1000).records.at(record_state::pending), 1);
  EXPECT_EQ(first_row("SELECT reached_at FROM ehr_contact", 1), std::vector<std::string>{"1500"})
      << "the last success recorded before, kept as such";
  const auto id = migrated->register_owner("daemon", 1000);
  EXPECT_TRUE(migrated->lead("alerts", id, 1000, 15000));
}

}  // namespace

namespace {

INSTANTIATE_TEST_SUITE_P(stores, lanes_test, testing::Values(std::string("sqlite"), std::string("postgresql")),
                         [](const testing::TestParamInfo<std::string>& info) { return info.param; });

}  // namespace
