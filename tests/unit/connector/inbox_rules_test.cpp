// Which inbox files are complete, and how a file's text splits into records.
#include "connector/intake/inbox.h"

#include <gtest/gtest.h>

#include "connector/intake/record_files.h"

namespace {

using namespace connector;

TEST(inbox_takes, json_and_ndjson_files) {
  for (const char* name : {"visit.json", "visit.ndjson", "2026-11-24-batch.ndjson", "a.b.json", "x.json"}) {
    EXPECT_TRUE(inbox_takes(name)) << name;
  }
}

TEST(inbox_takes, not_temporary_partial_or_hidden_files) {
  for (const char* name : {"visit.tmp", "visit.json.tmp", "visit.ndjson.part", "visit.part", ".visit.json",
                           ".x.json", ".json", ".ndjson", "json", "ndjson", "visit.jsonl", "visit.json~",
                           "visit.json.swp", "visitjson", "", "processed", "visit.txt"}) {
    EXPECT_FALSE(inbox_takes(name)) << '"' << name << '"';
  }
}

TEST(split_records, ndjson_is_one_record_per_line_with_its_line_number) {
  const std::string content = "{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n";
  const auto records = split_records(content, true);
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[0].json, "{\"a\":1}");
  EXPECT_EQ(records[0].line, 1u);
  EXPECT_EQ(records[1].json, "{\"b\":2}");
  EXPECT_EQ(records[1].line, 2u);
  EXPECT_EQ(records[2].json, "{\"c\":3}");
  EXPECT_EQ(records[2].line, 3u);
}

TEST(split_records, blank_lines_are_skipped_but_counted) {
  const std::string content = "\n{\"a\":1}\n\n   \n\t\n{\"b\":2}\n\n";
  const auto records = split_records(content, true);
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0].json, "{\"a\":1}");
  EXPECT_EQ(records[0].line, 2u);
  EXPECT_EQ(records[1].json, "{\"b\":2}");
  EXPECT_EQ(records[1].line, 6u);
}

TEST(split_records, crlf_line_ends_are_trimmed) {
  const std::string content = "{\"a\":1}\r\n\r\n{\"b\":2}\r\n{\"c\":3}";
  const auto records = split_records(content, true);
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[0].json, "{\"a\":1}");
  EXPECT_EQ(records[1].json, "{\"b\":2}");
  EXPECT_EQ(records[1].line, 3u);
  EXPECT_EQ(records[2].json, "{\"c\":3}");  // the last line needs no newline
  EXPECT_EQ(records[2].line, 4u);
}

TEST(split_records, records_point_into_the_content) {
  const std::string content = "{\"a\":1}\n{\"b\":2}";
  const auto records = split_records(content, true);
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[1].json.data(), content.data() + 8);
}

TEST(split_records, empty_ndjson_has_no_records) {
  EXPECT_TRUE(split_records("", true).empty());
  EXPECT_TRUE(split_records("\n\r\n  \n", true).empty());
}

TEST(split_records, anything_else_is_one_record_as_it_is) {
  const std::string content = "{\n  \"a\": 1,\n\n  \"b\": 2\n}\r\n";
  const auto records = split_records(content, false);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].json, content);
  EXPECT_EQ(records[0].line, 1u);
  // Two JSON objects on two lines are still one record (the reader will refuse it), not two.
  EXPECT_EQ(split_records("{\"a\":1}\n{\"b\":2}\n", false).size(), 1u);
}

}  // namespace
