// Untrusted JSON: positions in errors, a depth limit instead of a stack overflow.
#include "fhir/json_parse.h"
#include "fhir/json_value.h"

#include <gtest/gtest.h>

namespace {

using fhir::detail::parse_json;

TEST(json_parse, reports_line_and_column_of_the_error) {
  rapidjson::Document doc;
  const std::string error = parse_json(doc, "{\n  \"a\": 1,\n  \"b\": tru\n}");
  EXPECT_NE(error.find("line 3"), std::string::npos) << error;
  EXPECT_NE(error.find("column"), std::string::npos) << error;
}

TEST(json_parse, refuses_trailing_content) {
  rapidjson::Document doc;
  EXPECT_NE(parse_json(doc, "{} {}"), "");
}

TEST(json_parse, refuses_nesting_beyond_the_limit_without_crashing) {
  for (std::size_t depth : {65u, 10'001u, 1'000'000u}) {
    const std::string deep = std::string(depth, '[') + std::string(depth, ']');
    rapidjson::Document doc;
    const std::string error = parse_json(doc, deep);
    EXPECT_NE(error.find("nested deeper than 64"), std::string::npos) << depth << ": " << error;
  }
  const std::string ok = std::string(64, '[') + std::string(64, ']');
  rapidjson::Document doc;
  EXPECT_EQ(parse_json(doc, ok), "");
}

TEST(json_parse, refuses_invalid_utf8) {
  rapidjson::Document doc;
  EXPECT_NE(parse_json(doc, "\"\xff\xfe\""), "");
}

TEST(json_value, reads_comments_only_when_allowed) {
  fhir::json_value v;
  const std::string text = "{ // a comment\n \"a\": [1, \"x\", true, null] }";
  EXPECT_NE(fhir::parse_json_value(text, v, false), "");
  ASSERT_EQ(fhir::parse_json_value(text, v, true), "");
  const auto* a = v.find("a");
  ASSERT_NE(a, nullptr);
  ASSERT_TRUE(a->is_array());
  EXPECT_TRUE(a->items[0].is_integer);
  EXPECT_EQ(a->items[1].text, "x");
  EXPECT_TRUE(a->items[2].boolean);
  EXPECT_EQ(a->items[3].type, fhir::json_value::kind::null);
}

}  // namespace
