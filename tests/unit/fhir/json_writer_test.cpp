// fhir::json_writer: the text it produces is what the EHR receives.
#include "fhir/json_writer.h"

#include <gtest/gtest.h>

namespace {

TEST(json_writer, whole_numbers_have_no_fraction_and_decimals_keep_theirs) {
  fhir::json_writer w;
  w.begin_array();
  w.number(155);
  w.number(2.5);
  w.number(-0.1);
  w.number(1e21);
  w.end_array();
  EXPECT_EQ(w.view(), "[155,2.5,-0.1,1e21]");
}

TEST(json_writer, escapes_strings) {
  fhir::json_writer w;
  w.begin_object();
  w.member("note", "a \"quoted\"\nline\\");
  w.end_object();
  EXPECT_EQ(w.view(), R"({"note":"a \"quoted\"\nline\\"})");
}

TEST(json_writer, keys_are_quoted_and_escaped_when_they_need_it) {
  fhir::json_writer w;
  w.begin_object();
  w.member("resourceType", "Bundle");
  w.member("value_x", 1);
  w.member("we\"ird key", 2);
  w.member(std::string(100, 'k'), 3);
  w.end_object();
  EXPECT_EQ(w.view(), R"({"resourceType":"Bundle","value_x":1,"we\"ird key":2,")" + std::string(100, 'k') + R"(":3})");
}

TEST(json_writer, clear_starts_over_with_the_same_writer) {
  fhir::json_writer w;
  w.begin_object();
  w.member("a", 1);
  w.end_object();
  w.clear();
  w.begin_array();
  w.end_array();
  EXPECT_EQ(w.view(), "[]");
}

TEST(json_writer, pretty_json_indents_and_leaves_invalid_text_alone) {
  EXPECT_EQ(fhir::pretty_json(R"({"a":[1]})"), "{\n  \"a\": [\n    1\n  ]\n}");
  EXPECT_EQ(fhir::pretty_json("{nope"), "{nope");
}

}  // namespace
