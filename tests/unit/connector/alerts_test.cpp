// Alerts: when each condition holds, and that an incident opens once and closes once, across a
// flood of evaluations and a restart.
#include "connector/observe/alerts.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <memory>

#include <gtest/gtest.h>
#include <sqlite3.h>

#include "connector/outbox/sqlite_outbox.h"

namespace {

namespace fs = std::filesystem;
using namespace connector;

constexpr std::int64_t minute = 60 * 1000;
constexpr std::int64_t t0 = 1795514700000;  // 2026-11-24T10:05:00Z

std::vector<std::string> keys(const std::vector<open_alert>& alerts) {
  std::vector<std::string> k;
  for (const auto& a : alerts) k.push_back(a.key);
  return k;
}

const open_alert* find(const std::vector<open_alert>& alerts, const std::string& key) {
  const auto it = std::find_if(alerts.begin(), alerts.end(), [&](const open_alert& a) { return a.key == key; });
  return it == alerts.end() ? nullptr : &*it;
}

alert_inputs unreachable_since(std::int64_t since_ms, std::string detail = "connection refused") {
  alert_inputs in;
  in.status.ehr_reached = false;
  in.status.ehr_detail = std::move(detail);
  in.status.ehr_unreachable_since_ms = since_ms;
  return in;
}

alert_inputs dead_letters(std::int64_t n) {
  alert_inputs in;
  in.status.records[record_state::dead] = n;
  return in;
}

alerts_config defaults() {
  alerts_config c;
  c.enabled = true;
  return c;
}

// ---- alert_conditions ----

TEST(alert_conditions, nothing_holds_for_a_healthy_connector) {
  alert_inputs in;
  in.status.records[record_state::delivered] = 12;
  in.status.records[record_state::pending] = 1;
  in.status.oldest_pending_age_ms = 10 * 1000;
  in.status.ehr_reached = true;
  in.status.ehr_detail = "HTTP 200";
  in.status.ehr_last_contact_ms = t0;
  in.certificates.push_back({"ehr.client_cert_file", "/etc/mc/client.pem", 200});
  EXPECT_TRUE(alert_conditions(defaults(), in, t0).empty());
}

TEST(alert_conditions, ehr_unreachable_only_after_the_configured_minutes) {
  const auto in = unreachable_since(t0);
  EXPECT_TRUE(alert_conditions(defaults(), in, t0).empty());
  EXPECT_TRUE(alert_conditions(defaults(), in, t0 + 5 * minute - 1).empty());
  const auto now = alert_conditions(defaults(), in, t0 + 5 * minute);
  ASSERT_EQ(keys(now), std::vector<std::string>{"ehr_unreachable"});
  EXPECT_EQ(now[0].opened_at_ms, t0);
  EXPECT_NE(now[0].detail.find("5 min"), std::string::npos) << now[0].detail;
  EXPECT_NE(now[0].detail.find("connection refused"), std::string::npos) << now[0].detail;

  auto patient = defaults();
  patient.ehr_unreachable_minutes = 10;
  EXPECT_TRUE(alert_conditions(patient, in, t0 + 9 * minute).empty());
  EXPECT_EQ(keys(alert_conditions(patient, in, t0 + 10 * minute)), std::vector<std::string>{"ehr_unreachable"});
}

TEST(alert_conditions, ehr_unreachable_not_without_a_first_failure) {
  alert_inputs in;
  in.status.ehr_reached = false;
  in.status.ehr_detail = "connection refused";
  in.status.ehr_last_contact_ms = t0 - 60 * minute;
  EXPECT_TRUE(alert_conditions(defaults(), in, t0).empty());
}

TEST(alert_conditions, ehr_refuses_credentials_on_401_and_403_when_reached) {
  for (const char* detail : {"HTTP 401", "HTTP 403", "no token: token endpoint refused: invalid_client (HTTP 400)"}) {
    alert_inputs in;
    in.status.ehr_reached = true;
    in.status.ehr_detail = detail;
    in.status.ehr_last_contact_ms = t0 - 1000;
    const auto now = alert_conditions(defaults(), in, t0);
    ASSERT_EQ(keys(now), std::vector<std::string>{"ehr_refuses_credentials"}) << detail;
    EXPECT_NE(now[0].detail.find(detail), std::string::npos) << now[0].detail;
    EXPECT_EQ(now[0].opened_at_ms, t0 - 1000);
  }
}

TEST(alert_conditions, ehr_refuses_credentials_not_for_other_answers_or_when_not_reached) {
  for (const char* detail : {"HTTP 200", "HTTP 500", "HTTP 429", "HTTP 4010", "token endpoint answered HTTP 503"}) {
    alert_inputs in;
    in.status.ehr_reached = true;
    in.status.ehr_detail = detail;
    EXPECT_TRUE(alert_conditions(defaults(), in, t0).empty()) << detail;
  }
  alert_inputs not_reached;
  not_reached.status.ehr_reached = false;
  not_reached.status.ehr_detail = "HTTP 401";
  EXPECT_TRUE(alert_conditions(defaults(), not_reached, t0).empty());
}

TEST(alert_conditions, sync_log_unwritable_while_its_writes_fail) {
  alert_inputs in;
  EXPECT_TRUE(alert_conditions(defaults(), in, t0).empty());
  in.sync_log_failing = "/var/log/migraine-connector/sync-log.jsonl";
  const auto now = alert_conditions(defaults(), in, t0);
  ASSERT_EQ(keys(now), std::vector<std::string>{"sync_log_unwritable"});
  EXPECT_NE(now[0].detail.find("/var/log/migraine-connector/sync-log.jsonl"), std::string::npos);
}

TEST(alert_conditions, dead_letters_when_any_record_is_dead) {
  EXPECT_TRUE(alert_conditions(defaults(), dead_letters(0), t0).empty());
  const auto one = alert_conditions(defaults(), dead_letters(1), t0);
  ASSERT_EQ(keys(one), std::vector<std::string>{"dead_letters"});
  EXPECT_NE(one[0].detail.find("1 dead letter waits"), std::string::npos) << one[0].detail;
  const auto three = alert_conditions(defaults(), dead_letters(3), t0);
  ASSERT_EQ(keys(three), std::vector<std::string>{"dead_letters"});
  EXPECT_NE(three[0].detail.find("3 dead letters wait"), std::string::npos) << three[0].detail;
}

TEST(alert_conditions, oldest_pending_past_the_limit) {
  alert_inputs in;
  in.status.records[record_state::pending] = 4;
  in.status.oldest_pending_age_ms = 30 * minute - 1;
  EXPECT_TRUE(alert_conditions(defaults(), in, t0).empty());
  in.status.oldest_pending_age_ms = 45 * minute;
  const auto now = alert_conditions(defaults(), in, t0);
  ASSERT_EQ(keys(now), std::vector<std::string>{"oldest_pending"});
  EXPECT_NE(now[0].detail.find("45 min"), std::string::npos) << now[0].detail;
  EXPECT_EQ(now[0].opened_at_ms, t0 - 45 * minute);

  auto strict = defaults();
  strict.oldest_pending_minutes = 60;
  EXPECT_TRUE(alert_conditions(strict, in, t0).empty());
}

TEST(alert_conditions, certificate_expiring_per_setting) {
  alert_inputs in;
  in.certificates = {{"ehr.client_cert_file", "/etc/mc/client.pem", 29},
                     {"ingest_api.cert_file", "/etc/mc/api.pem", 30},
                     {"admin.cert_file", "/etc/mc/admin.pem", -2},
                     {"alerts.ca_file", "/etc/mc/hook-ca.pem", std::nullopt}};
  const auto now = alert_conditions(defaults(), in, t0);
  EXPECT_EQ(keys(now), (std::vector<std::string>{"certificate_expiring:ehr.client_cert_file",
                                                 "certificate_expiring:admin.cert_file",
                                                 "certificate_expiring:alerts.ca_file"}));
  const auto* soon = find(now, "certificate_expiring:ehr.client_cert_file");
  ASSERT_NE(soon, nullptr);
  EXPECT_NE(soon->detail.find("expires in 29 days"), std::string::npos) << soon->detail;
  EXPECT_NE(soon->detail.find("/etc/mc/client.pem"), std::string::npos) << soon->detail;
  const auto* expired = find(now, "certificate_expiring:admin.cert_file");
  ASSERT_NE(expired, nullptr);
  EXPECT_NE(expired->detail.find("expired 2 days ago"), std::string::npos) << expired->detail;
  const auto* unreadable = find(now, "certificate_expiring:alerts.ca_file");
  ASSERT_NE(unreadable, nullptr);
  EXPECT_NE(unreadable->detail.find("cannot be read"), std::string::npos) << unreadable->detail;

  auto relaxed = defaults();
  relaxed.certificate_days = 7;
  EXPECT_EQ(keys(alert_conditions(relaxed, in, t0)), (std::vector<std::string>{"certificate_expiring:admin.cert_file",
                                                                              "certificate_expiring:alerts.ca_file"}));
}

TEST(alert_conditions, several_hold_at_once) {
  auto in = unreachable_since(t0 - 10 * minute);
  in.status.records[record_state::dead] = 2;
  in.status.oldest_pending_age_ms = 40 * minute;
  const auto now = keys(alert_conditions(defaults(), in, t0));
  EXPECT_EQ(now, (std::vector<std::string>{"ehr_unreachable", "dead_letters", "oldest_pending"}));
}

// ---- alert_monitor ----

struct recording_sink : event_sink {
  std::vector<sync_event> events;
  void emit(const sync_event& e) override { events.push_back(e); }
  std::size_t count(std::string_view name) const {
    return static_cast<std::size_t>(
        std::count_if(events.begin(), events.end(), [&](const sync_event& e) { return e.name == name; }));
  }
};

class alert_monitor_test : public testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = testing::TempDir() + "alerts-test-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    path_ = (dir_ / "outbox.db").string();
    store_ = std::make_unique<sqlite_outbox>(path_);
  }
  void TearDown() override {
    store_.reset();
    fs::remove_all(dir_);
  }

  fs::path dir_;
  std::string path_;
  std::unique_ptr<sqlite_outbox> store_;
  recording_sink sink_;
};

TEST_F(alert_monitor_test, a_flood_opens_exactly_one_alert) {
  alert_monitor monitor(defaults(), sink_);
  std::vector<alert_change> changes;
  for (int i = 0; i < 100; ++i) {
    auto c = monitor.evaluate(*store_, dead_letters(1), t0 + i * 1000);
    changes.insert(changes.end(), c.begin(), c.end());
  }
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_TRUE(changes[0].opened);
  EXPECT_EQ(changes[0].alert.key, "dead_letters");
  EXPECT_EQ(changes[0].at_ms, t0);
  EXPECT_EQ(changes[0].alert.opened_at_ms, t0);
  ASSERT_EQ(sink_.events.size(), 1u);
  EXPECT_EQ(sink_.events[0].name, event::alert_opened);
  EXPECT_EQ(sink_.events[0].time_ms, t0);
  EXPECT_EQ(sink_.events[0].detail.rfind("dead_letters: ", 0), 0u) << sink_.events[0].detail;
  const auto open = store_->open_alerts();
  ASSERT_EQ(open.size(), 1u);
  EXPECT_EQ(open[0].key, "dead_letters");
  EXPECT_EQ(open[0].opened_at_ms, t0);
}

TEST_F(alert_monitor_test, a_changing_detail_does_not_reopen) {
  alert_monitor monitor(defaults(), sink_);
  const std::int64_t since = t0 - 10 * minute;
  std::size_t changes = 0;
  for (int i = 0; i < 100; ++i) changes += monitor.evaluate(*store_, unreachable_since(since), t0 + i * minute).size();
  EXPECT_EQ(changes, 1u);
  EXPECT_EQ(sink_.count(event::alert_opened), 1u);
  EXPECT_EQ(sink_.events.size(), 1u);
  const auto open = store_->open_alerts();
  ASSERT_EQ(open.size(), 1u);
  EXPECT_EQ(open[0].opened_at_ms, t0);  // the incident's start, not the last evaluation
  EXPECT_NE(open[0].detail.find("109 min"), std::string::npos) << open[0].detail;  // kept up to date
}

TEST_F(alert_monitor_test, closes_exactly_once_when_the_condition_ends) {
  alert_monitor monitor(defaults(), sink_);
  ASSERT_EQ(monitor.evaluate(*store_, dead_letters(2), t0).size(), 1u);
  const auto closed = monitor.evaluate(*store_, dead_letters(0), t0 + minute);
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_FALSE(closed[0].opened);
  EXPECT_EQ(closed[0].alert.key, "dead_letters");
  EXPECT_EQ(closed[0].alert.opened_at_ms, t0);
  EXPECT_EQ(closed[0].at_ms, t0 + minute);
  for (int i = 2; i < 50; ++i) EXPECT_TRUE(monitor.evaluate(*store_, dead_letters(0), t0 + i * minute).empty()) << i;
  EXPECT_EQ(sink_.count(event::alert_opened), 1u);
  EXPECT_EQ(sink_.count(event::alert_closed), 1u);
  EXPECT_EQ(sink_.events.back().time_ms, t0 + minute);
  EXPECT_TRUE(store_->open_alerts().empty());
}

TEST_F(alert_monitor_test, reopening_after_close_is_a_new_incident) {
  alert_monitor monitor(defaults(), sink_);
  monitor.evaluate(*store_, dead_letters(1), t0);
  monitor.evaluate(*store_, dead_letters(0), t0 + minute);
  const auto again = monitor.evaluate(*store_, dead_letters(1), t0 + 2 * minute);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_TRUE(again[0].opened);
  EXPECT_EQ(again[0].alert.opened_at_ms, t0 + 2 * minute);
  EXPECT_EQ(sink_.count(event::alert_opened), 2u);
  EXPECT_EQ(sink_.count(event::alert_closed), 1u);
  const auto open = store_->open_alerts();
  ASSERT_EQ(open.size(), 1u);
  EXPECT_EQ(open[0].opened_at_ms, t0 + 2 * minute);
}

TEST_F(alert_monitor_test, one_alert_closing_leaves_the_others_open) {
  alert_monitor monitor(defaults(), sink_);
  auto both = dead_letters(1);
  both.status.oldest_pending_age_ms = 40 * minute;
  EXPECT_EQ(monitor.evaluate(*store_, both, t0).size(), 2u);
  auto only_pending = dead_letters(0);
  only_pending.status.oldest_pending_age_ms = 41 * minute;
  const auto changes = monitor.evaluate(*store_, only_pending, t0 + minute);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_FALSE(changes[0].opened);
  EXPECT_EQ(changes[0].alert.key, "dead_letters");
  EXPECT_EQ(keys(store_->open_alerts()), std::vector<std::string>{"oldest_pending"});
}

TEST_F(alert_monitor_test, a_restart_does_not_reopen_an_open_alert_nor_forget_it) {
  {
    alert_monitor before(defaults(), sink_);
    ASSERT_EQ(before.evaluate(*store_, unreachable_since(t0 - 6 * minute), t0).size(), 1u);
  }
  store_ = std::make_unique<sqlite_outbox>(path_);  // the process starts again on the same store
  recording_sink after_sink;
  alert_monitor after(defaults(), after_sink);
  for (int i = 1; i <= 10; ++i) {
    EXPECT_TRUE(after.evaluate(*store_, unreachable_since(t0 - 6 * minute), t0 + i * minute).empty()) << i;
  }
  EXPECT_TRUE(after_sink.events.empty());
  alert_inputs reached;
  reached.status.ehr_reached = true;
  reached.status.ehr_detail = "HTTP 200";
  const auto closed = after.evaluate(*store_, reached, t0 + 20 * minute);
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_FALSE(closed[0].opened);
  EXPECT_EQ(closed[0].alert.key, "ehr_unreachable");
  EXPECT_EQ(closed[0].alert.opened_at_ms, t0);
  ASSERT_EQ(after_sink.events.size(), 1u);
  EXPECT_EQ(after_sink.events[0].name, event::alert_closed);
}

// On a full disk the store cannot record the alert that says so: it is posted all the same, once,
// and recorded when the store takes writes again. (A foreign write lock stands in for the disk.)
TEST_F(alert_monitor_test, an_alert_the_store_cannot_record_is_posted_once_and_recorded_later) {
  store_ = std::make_unique<sqlite_outbox>(path_, sqlite_options{.busy_timeout_ms = 10, .busy_attempts = 1});
  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &other), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  alert_inputs full;
  full.store_problem = "the store " + path_ + " is full: its disk has no space left";
  alert_monitor monitor(defaults(), sink_);
  std::vector<alert_change> changes;
  for (int i = 0; i < 5; ++i) {
    auto c = monitor.evaluate(*store_, full, t0 + i * 1000);
    changes.insert(changes.end(), c.begin(), c.end());
  }
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_TRUE(changes[0].opened);
  EXPECT_EQ(changes[0].alert.key, "store_unwritable");
  EXPECT_NE(changes[0].alert.detail.find("is full"), std::string::npos) << changes[0].alert.detail;
  EXPECT_TRUE(store_->open_alerts().empty());  // not recorded: the store refused

  ASSERT_EQ(sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(other);
  EXPECT_TRUE(monitor.evaluate(*store_, full, t0 + 10000).empty());  // recorded now, not posted again
  EXPECT_EQ(keys(store_->open_alerts()), std::vector<std::string>{"store_unwritable"});
  const auto closed = monitor.evaluate(*store_, alert_inputs{}, t0 + 20000);
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_FALSE(closed[0].opened);
  EXPECT_EQ(closed[0].alert.opened_at_ms, t0);
  EXPECT_TRUE(store_->open_alerts().empty());
  EXPECT_EQ(sink_.events.size(), 2u);
}

}  // namespace

namespace {

TEST(alert_conditions, waits_for_patient_while_records_wait_for_the_ehrs_own_patient) {
  alert_inputs in;
  EXPECT_TRUE(alert_conditions(defaults(), in, 5000).empty());
  in.waiting_for_party = 2;
  const auto now = alert_conditions(defaults(), in, 5000);
  ASSERT_EQ(now.size(), 1u);
  EXPECT_EQ(now[0].key, "waits_for_patient");
  EXPECT_EQ(now[0].detail.rfind("2 records wait for their patient or practitioner to exist at the EHR", 0), 0u) << now[0].detail;
}

}  // namespace

namespace {

// ---- several instances on one store: the leader evaluates for all ----

TEST(alert_conditions, what_several_instances_each_see_alone_is_one_alert_naming_each) {
  alert_inputs in = unreachable_since(t0 - 6 * minute);
  in.instance = "daemon pid 10 on host-a";
  in.sync_log_failing = "/var/log/mc/sync.log";
  in.others = {{"daemon pid 20 on host-b", {{"sync_log_unwritable", "the sync log /srv/mc/sync.log cannot be written", t0}}},
               {"daemon pid 30 on host-c", {}}};
  const auto now = alert_conditions(defaults(), in, t0);
  EXPECT_EQ(keys(now), (std::vector<std::string>{"ehr_unreachable", "sync_log_unwritable"}))
      << "the EHR, seen by all, gives one alert; the sync logs one more";
  const auto* log = find(now, "sync_log_unwritable");
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(log->detail.rfind("daemon pid 10 on host-a: the sync log /var/log/mc/sync.log cannot be written", 0), 0u)
      << log->detail;
  EXPECT_NE(log->detail.find("; daemon pid 20 on host-b: the sync log /srv/mc/sync.log cannot be written"), std::string::npos)
      << log->detail;
  EXPECT_EQ(log->detail.find("host-c"), std::string::npos) << "an instance that sees nothing wrong is not named";

  alert_inputs only_b;
  only_b.instance = "daemon pid 10 on host-a";
  only_b.others = in.others;
  EXPECT_EQ(keys(alert_conditions(defaults(), only_b, t0)), std::vector<std::string>{"sync_log_unwritable"})
      << "another instance's condition alerts though the leader does not see it";
  EXPECT_EQ(keys(own_conditions(defaults(), in, t0)), std::vector<std::string>{"sync_log_unwritable"})
      << "what this one publishes: its own conditions only";
}

// A leader that opened an alert it could not record, then lost the lead: it records what it
// posted, and the new leader closes it once (not open it again, nor leave it open at the webhook).
TEST_F(alert_monitor_test, a_leader_that_hands_over_records_what_it_posted_for_the_next) {
  store_ = std::make_unique<sqlite_outbox>(path_, sqlite_options{.busy_timeout_ms = 10, .busy_attempts = 1, .on_busy = {}});
  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &other), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  alert_inputs unwritable;
  unwritable.store_problem = "the store cannot be written";
  alert_monitor old_leader(defaults(), sink_);
  ASSERT_EQ(old_leader.evaluate(*store_, unwritable, t0).size(), 1u);
  EXPECT_TRUE(store_->open_alerts().empty());
  ASSERT_EQ(sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(other);
  old_leader.hand_over(*store_);
  EXPECT_EQ(keys(store_->open_alerts()), std::vector<std::string>{"store_unwritable"});

  recording_sink new_sink;
  alert_monitor new_leader(defaults(), new_sink);
  const auto closed = new_leader.evaluate(*store_, alert_inputs{}, t0 + 20000);
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_FALSE(closed[0].opened);
  EXPECT_EQ(closed[0].alert.opened_at_ms, t0);
  EXPECT_TRUE(new_leader.evaluate(*store_, alert_inputs{}, t0 + 25000).empty());
}

}  // namespace
