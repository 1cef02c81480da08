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

// The writer copies sixteen (or eight) bytes at a time when none needs escaping: a character that does is
// escaped wherever it falls in the word, and bytes of UTF-8 text pass through.
TEST(json_writer, escapes_a_special_character_at_every_position) {
  const std::string specials[] = {"\"", "\\", std::string(1, '\0'), "\x01", "\x1f", "\n"};
  const std::string escaped[] = {"\\\"", "\\\\", "\\u0000", "\\u0001", "\\u001F", "\\n"};
  for (std::size_t k = 0; k < std::size(specials); ++k) {
    for (std::size_t at = 0; at < 40; ++at) {
      const std::string text = std::string(at, 'a') + specials[k] + "\xc3\xa9 tail text";
      fhir::json_writer w;
      w.string(text);
      EXPECT_EQ(w.view(), "\"" + std::string(at, 'a') + escaped[k] + "\xc3\xa9 tail text\"") << k << " at " << at;
    }
  }
  for (std::size_t length = 0; length < 50; ++length) {  // every tail length, long and short
    const std::string plain(length, 'x');
    fhir::json_writer w;
    w.string(plain);
    EXPECT_EQ(w.view(), "\"" + plain + "\"") << length;
  }
  fhir::json_writer w;
  w.string(" !#$%&'()*+,-./0123456789:;<=>?@[]^_`{|}~\x7f\x80\xff");
  EXPECT_EQ(w.view(), "\" !#$%&'()*+,-./0123456789:;<=>?@[]^_`{|}~\x7f\x80\xff\"") << "nothing else is escaped";
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
