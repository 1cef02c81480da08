// The sync log: the line format, UTC times, rotation by size, and reading it back.
#include "connector/observe/sync_log.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include "connector/config/config.h"

namespace {

namespace fs = std::filesystem;
using namespace connector;

std::vector<std::string> lines_of(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// The record ids of a file's lines, in file order.
std::vector<std::string> ids_in(const std::string& path) {
  std::vector<std::string> ids;
  for (const auto& line : lines_of(path)) {
    rapidjson::Document doc;
    doc.Parse(line.data(), line.size());
    if (!doc.HasParseError() && doc.IsObject() && doc.HasMember("record_id")) ids.push_back(doc["record_id"].GetString());
  }
  return ids;
}

sync_event delivered(std::string record_id, std::int64_t time_ms = 1795514700123, int attempt = 0) {
  sync_event e;
  e.time_ms = time_ms;
  e.name = event::delivered;
  e.record_id = std::move(record_id);
  e.attempt = attempt;
  return e;
}

class sync_log_test : public testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = testing::TempDir() + "sync-log-test-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    path_ = (dir_ / "sync-log.jsonl").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Settings that rotate after exactly `lines_per_file` lines as long as `delivered(id)`.
  log_config rotating(int lines_per_file, int keep_files) const {
    const auto line_size = static_cast<std::int64_t>(event_json(delivered("R-00")).size() + 1);
    return {path_, line_size * lines_per_file, keep_files};
  }

  fs::path dir_;
  std::string path_;
};

// ---- event_json ----

TEST(event_json, leaves_out_empty_and_zero_fields) {
  sync_event e;
  e.time_ms = 0;
  e.name = event::received;
  EXPECT_EQ(event_json(e), R"({"time":"1970-01-01T00:00:00.000Z","event":"received"})");
}

TEST(event_json, writes_every_field_that_is_set) {
  sync_event e;
  e.time_ms = 1795514700123;
  e.name = event::dead_lettered;
  e.record_id = "P-7";
  e.record_type = "procedure";
  e.revision = 2;
  e.attempt = 3;
  e.http_status = 422;
  e.latency_ms = 85;
  e.correlation_id = "P-7/r2/a3";
  e.ehr_error = "error invalid: \u2026 (Procedure.code)";
  e.patient = "pk-1a2b";
  e.channel = "api";
  e.detail = "refused";
  EXPECT_EQ(event_json(e),
            R"({"time":"2026-11-24T10:05:00.123Z","event":"dead_lettered","record_id":"P-7","record_type":"procedure",)"
            R"("revision":2,"attempt":3,"http_status":422,"latency_ms":85,"correlation_id":"P-7/r2/a3",)"
            R"x("ehr_error":"error invalid: )x" "\u2026" R"x( (Procedure.code)","patient":"pk-1a2b","channel":"api",)x"
            R"("detail":"refused"})");
}

TEST(event_json, escapes_strings_so_the_line_stays_one_json_object) {
  sync_event e;
  e.name = event::rejected;
  e.record_id = "R-\"1\"";
  e.detail = "line one\nline \"two\" \\ end\t\x01";
  const std::string json = event_json(e);
  EXPECT_EQ(json.find('\n'), std::string::npos) << json;
  EXPECT_NE(json.find(R"(\"two\")"), std::string::npos) << json;
  EXPECT_NE(json.find(R"(\\ end)"), std::string::npos) << json;
  rapidjson::Document doc;
  doc.Parse(json.data(), json.size());
  ASSERT_FALSE(doc.HasParseError()) << json;
  EXPECT_EQ(std::string(doc["record_id"].GetString()), e.record_id);
  EXPECT_EQ(std::string(doc["detail"].GetString()), e.detail);
}

// ---- utc_text ----

TEST(utc_text, writes_milliseconds_and_a_z) {
  EXPECT_EQ(utc_text(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(utc_text(1795514700123), "2026-11-24T10:05:00.123Z");
  EXPECT_EQ(utc_text(1709251199999), "2024-02-29T23:59:59.999Z");
}

TEST(utc_text, counts_back_from_1970_for_negative_times) {
  EXPECT_EQ(utc_text(-1), "1969-12-31T23:59:59.999Z");
  EXPECT_EQ(utc_text(-1000), "1969-12-31T23:59:59.000Z");
  EXPECT_EQ(utc_text(-86400000), "1969-12-31T00:00:00.000Z");
  EXPECT_EQ(utc_text(-281102399500), "1961-02-03T12:00:00.500Z");
}

// ---- parse_time_or_age ----

constexpr std::int64_t now = 1795514700123;

TEST(parse_time_or_age, reads_utc_times_with_and_without_milliseconds) {
  EXPECT_EQ(parse_time_or_age("2026-11-24T10:05:00.123Z", now), 1795514700123);
  EXPECT_EQ(parse_time_or_age("2026-11-24T10:05:00Z", now), 1795514700000);
  EXPECT_EQ(parse_time_or_age("2026-11-24T10:05Z", now), 1795514700000);
  EXPECT_EQ(parse_time_or_age("2026-11-24T10:05:00.1Z", now), 1795514700100);
}

TEST(parse_time_or_age, reads_a_date_as_its_midnight_utc) {
  EXPECT_EQ(parse_time_or_age("2026-11-24", now), 1795478400000);
  EXPECT_EQ(parse_time_or_age("1970-01-01", now), 0);
}

TEST(parse_time_or_age, reads_what_utc_text_writes) {
  for (std::int64_t t : {std::int64_t{0}, std::int64_t{-1}, std::int64_t{1709251199999}, std::int64_t{-281102399500},
                         std::int64_t{1795514700123}}) {
    EXPECT_EQ(parse_time_or_age(utc_text(t), now), t) << utc_text(t);
  }
}

TEST(parse_time_or_age, reads_an_age_before_now) {
  EXPECT_EQ(parse_time_or_age("90s", now), now - 90 * 1000);
  EXPECT_EQ(parse_time_or_age("15m", now), now - 15 * 60 * 1000);
  EXPECT_EQ(parse_time_or_age("2h", now), now - 2 * 3600 * 1000);
  EXPECT_EQ(parse_time_or_age("3d", now), now - 3 * 86400 * std::int64_t{1000});
  EXPECT_EQ(parse_time_or_age("15m", 1000000), 1000000 - 900000);  // relative to the given now
}

TEST(parse_time_or_age, refuses_zone_offsets_and_local_times) {
  EXPECT_EQ(parse_time_or_age("2026-11-24T10:05:00+01:00", now), std::nullopt);
  EXPECT_EQ(parse_time_or_age("2026-11-24T10:05:00.123+01:00", now), std::nullopt);
  EXPECT_EQ(parse_time_or_age("2026-11-24T10:05:00-05:00", now), std::nullopt);
  EXPECT_EQ(parse_time_or_age("2026-11-24T10:05:00", now), std::nullopt);
}

TEST(parse_time_or_age, refuses_garbage_and_impossible_fields) {
  for (const char* bad : {"", "x", "yesterday", "15", "15x", "m", "-15m", "1.5h", "2026-13-01", "2026-02-30", "2026-04-31", "2026-00-10",
                          "2026-11-32", "2026-11-24T24:00:00Z", "2026-11-24T10:60:00Z", "2026-11-24T10:05:00.Z",
                          "2026/11/24", "2026-11-24T10Z", "2026-11-24Tfoo"}) {
    EXPECT_EQ(parse_time_or_age(bad, now), std::nullopt) << '"' << bad << '"';
  }
}

// ---- writing and rotating ----

TEST_F(sync_log_test, writes_one_line_per_event) {
  sync_log log({path_, 1 << 20, 3});
  log.emit(delivered("R-1"));
  log.emit(delivered("R-2"));
  log.emit(delivered("R-3"));
  const auto lines = lines_of(path_);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0], event_json(delivered("R-1")));
  EXPECT_EQ(ids_in(path_), (std::vector<std::string>{"R-1", "R-2", "R-3"}));
  EXPECT_EQ(log.failed_writes(), 0);
}

TEST_F(sync_log_test, appends_to_an_existing_log) {
  { sync_log(log_config{path_, 1 << 20, 3}).emit(delivered("R-1")); }
  { sync_log(log_config{path_, 1 << 20, 3}).emit(delivered("R-2")); }
  EXPECT_EQ(ids_in(path_), (std::vector<std::string>{"R-1", "R-2"}));
}

TEST_F(sync_log_test, the_file_is_not_readable_by_everyone) {
  sync_log log({path_, 1 << 20, 3});
  log.emit(delivered("R-1"));
  struct stat st {};
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0027, 0u) << std::oct << (st.st_mode & 0777);
}

TEST_F(sync_log_test, a_failed_write_is_counted_not_thrown) {
  if (::access("/dev/full", W_OK) != 0) GTEST_SKIP() << "no writable /dev/full here";
  sync_log log({"/dev/full", 1 << 20, 0});
  EXPECT_NO_THROW(log.emit(delivered("R-1")));
  EXPECT_NO_THROW(log.emit(delivered("R-2")));
  EXPECT_EQ(log.failed_writes(), 2);
  EXPECT_TRUE(log.failing());
}

TEST_F(sync_log_test, rotates_by_size_keeping_keep_files_newest_first) {
  const auto settings = rotating(3, 2);
  sync_log log(settings);
  for (int i = 0; i < 10; ++i) log.emit(delivered("R-0" + std::to_string(i)));
  EXPECT_EQ(ids_in(path_), (std::vector<std::string>{"R-09"}));
  EXPECT_EQ(ids_in(path_ + ".1"), (std::vector<std::string>{"R-06", "R-07", "R-08"}));
  EXPECT_EQ(ids_in(path_ + ".2"), (std::vector<std::string>{"R-03", "R-04", "R-05"}));
  EXPECT_FALSE(fs::exists(path_ + ".3"));
  for (const auto& file : log_files_oldest_first(settings)) {
    EXPECT_LE(static_cast<std::int64_t>(fs::file_size(file)), settings.max_bytes) << file;
  }
  EXPECT_EQ(log_files_oldest_first(settings), (std::vector<std::string>{path_ + ".2", path_ + ".1", path_}));
}

TEST_F(sync_log_test, never_loses_the_line_that_triggered_rotation) {
  const auto settings = rotating(3, 5);
  sync_log log(settings);
  std::vector<std::string> written;
  for (int i = 0; i < 10; ++i) {
    written.push_back("R-0" + std::to_string(i));
    log.emit(delivered(written.back()));
  }
  std::vector<std::string> found;
  for (const auto& file : log_files_oldest_first(settings)) {
    for (auto& id : ids_in(file)) found.push_back(id);
  }
  EXPECT_EQ(found, written);
  EXPECT_EQ(log.failed_writes(), 0);
}

TEST_F(sync_log_test, keep_files_zero_starts_a_fresh_file) {
  const auto settings = rotating(2, 0);
  sync_log log(settings);
  for (int i = 0; i < 5; ++i) log.emit(delivered("R-0" + std::to_string(i)));
  EXPECT_EQ(ids_in(path_), (std::vector<std::string>{"R-04"}));
  EXPECT_FALSE(fs::exists(path_ + ".1"));
}

TEST_F(sync_log_test, writes_to_the_new_file_after_another_process_rotated) {
  const auto settings = rotating(3, 3);
  sync_log ours(settings);
  sync_log theirs(settings);  // opened before the rotation: its descriptor is on the old file
  ours.emit(delivered("A-1"));
  ours.emit(delivered("A-2"));
  ours.emit(delivered("A-3"));
  ours.emit(delivered("A-4"));  // rotates
  ASSERT_EQ(ids_in(path_ + ".1"), (std::vector<std::string>{"A-1", "A-2", "A-3"}));
  theirs.emit(delivered("B-1"));
  ours.emit(delivered("A-5"));
  EXPECT_EQ(ids_in(path_), (std::vector<std::string>{"A-4", "B-1", "A-5"}));
  EXPECT_EQ(ids_in(path_ + ".1"), (std::vector<std::string>{"A-1", "A-2", "A-3"}));
  EXPECT_FALSE(fs::exists(path_ + ".2"));  // rotated once, not once per process
}

TEST_F(sync_log_test, a_log_removed_under_it_is_created_again) {
  sync_log log({path_, 1 << 20, 3});
  log.emit(delivered("R-1"));
  fs::remove(path_);
  log.emit(delivered("R-2"));
  EXPECT_EQ(ids_in(path_), (std::vector<std::string>{"R-2"}));
}

// ---- reading back ----

TEST_F(sync_log_test, recent_lines_are_newest_first_across_rotated_files) {
  const auto settings = rotating(3, 10);
  {
    sync_log log(settings);
    for (int i = 0; i < 8; ++i) log.emit(delivered("R-0" + std::to_string(i)));
  }
  ASSERT_GT(log_files_oldest_first(settings).size(), 2u);
  const auto lines = recent_event_lines(settings, 100);
  ASSERT_EQ(lines.size(), 8u);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(lines[i], event_json(delivered("R-0" + std::to_string(7 - i)))) << i;
}

TEST_F(sync_log_test, recent_lines_honour_the_limit) {
  const auto settings = rotating(3, 10);
  {
    sync_log log(settings);
    for (int i = 0; i < 8; ++i) log.emit(delivered("R-0" + std::to_string(i)));
  }
  const auto four = recent_event_lines(settings, 4);  // crosses from PATH into PATH.1
  ASSERT_EQ(four.size(), 4u);
  EXPECT_EQ(four[0], event_json(delivered("R-07")));
  EXPECT_EQ(four[3], event_json(delivered("R-04")));
  EXPECT_TRUE(recent_event_lines(settings, 0).empty());
}

TEST_F(sync_log_test, recent_lines_of_one_record_match_its_id_exactly) {
  const log_config settings{path_, 300, 10};  // rotates every line or two
  {
    sync_log log(settings);
    log.emit(delivered("R-1", 1000, 1));
    log.emit(delivered("R-10", 2000, 1));
    log.emit(delivered("R-1", 3000, 2));
    log.emit(delivered("R-2", 4000, 1));
    sync_event mention = delivered("X-9", 5000, 1);
    mention.detail = R"(see "record_id":"R-1")";
    log.emit(mention);
    log.emit(delivered("R-10", 6000, 2));
    log.emit(delivered("R-1", 7000, 3));
  }
  ASSERT_GT(log_files_oldest_first(settings).size(), 1u);
  const auto r1 = recent_event_lines(settings, 100, "R-1");
  ASSERT_EQ(r1.size(), 3u);
  EXPECT_EQ(r1[0], event_json(delivered("R-1", 7000, 3)));
  EXPECT_EQ(r1[1], event_json(delivered("R-1", 3000, 2)));
  EXPECT_EQ(r1[2], event_json(delivered("R-1", 1000, 1)));
  const auto r10 = recent_event_lines(settings, 100, "R-10");
  ASSERT_EQ(r10.size(), 2u);
  EXPECT_EQ(r10[0], event_json(delivered("R-10", 6000, 2)));
  const auto newest_r1 = recent_event_lines(settings, 1, "R-1");
  ASSERT_EQ(newest_r1.size(), 1u);
  EXPECT_EQ(newest_r1[0], r1[0]);
  EXPECT_TRUE(recent_event_lines(settings, 100, "R-").empty());
}

TEST_F(sync_log_test, recent_lines_skip_a_torn_last_line) {
  const log_config settings{path_, 1 << 20, 3};
  {
    sync_log log(settings);
    log.emit(delivered("R-1"));
  }
  std::ofstream(path_, std::ios::app) << R"({"time":"2026-11-24T10:05:00.123Z","event":"deliv)";
  const auto lines = recent_event_lines(settings, 10);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0], event_json(delivered("R-1")));
}

TEST_F(sync_log_test, no_log_yet_means_no_lines) {
  EXPECT_TRUE(recent_event_lines({path_, 1 << 20, 3}, 10).empty());
  EXPECT_TRUE(log_files_oldest_first({path_, 1 << 20, 3}).empty());
}

}  // namespace

namespace {

// A log that cannot be written never throws: it counts, says so, and resumes by itself.
TEST_F(sync_log_test, an_unwritable_log_counts_lost_lines_and_resumes_when_it_can) {
  const fs::path blocker = dir_ / "logs";
  std::ofstream(blocker) << "a file where the log's folder should be\n";  // root ignores permissions; this it cannot
  log_config settings;
  settings.path = (blocker / "sync-log.jsonl").string();
  sync_log log(settings);  // no throw
  EXPECT_TRUE(log.failing());
  log.emit(delivered("R-1"));
  log.emit(delivered("R-2"));
  EXPECT_EQ(log.failed_writes(), 2);
  EXPECT_TRUE(log.failing());
  fs::remove(blocker);
  fs::create_directory(blocker);
  log.emit(delivered("R-3"));
  EXPECT_FALSE(log.failing());
  EXPECT_EQ(log.failed_writes(), 2);
  EXPECT_EQ(ids_in(settings.path), std::vector<std::string>{"R-3"});
}


}  // namespace
