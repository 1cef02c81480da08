// Search values in conditional URLs: FHIR escaping, then percent-encoding. Each case is a value a
// clinic's MRN may really hold; read against FHIR R4 "Search" 3.1.1.1 (escaping) and RFC 3986.
#include "fhir/search_values.h"

#include <gtest/gtest.h>

namespace {

TEST(escape_search_value, puts_a_backslash_before_each_search_metacharacter) {
  EXPECT_EQ(fhir::escape_search_value("MRN-100,234"), "MRN-100\\,234");
  EXPECT_EQ(fhir::escape_search_value("a|b"), "a\\|b");
  EXPECT_EQ(fhir::escape_search_value("$5"), "\\$5");
  EXPECT_EQ(fhir::escape_search_value("a\\b"), "a\\\\b");
  EXPECT_EQ(fhir::escape_search_value("plain-MRN.1_x~"), "plain-MRN.1_x~");
}

TEST(percent_encode, leaves_only_the_unreserved_set) {
  EXPECT_EQ(fhir::percent_encode("AZaz09-._~"), "AZaz09-._~");
  EXPECT_EQ(fhir::percent_encode("MRN+100234"), "MRN%2B100234") << "+ would be read as a space";
  EXPECT_EQ(fhir::percent_encode("a&b#c"), "a%26b%23c") << "& and # would cut the query short";
  EXPECT_EQ(fhir::percent_encode("100% sure"), "100%25%20sure");
  EXPECT_EQ(fhir::percent_encode("Zoë"), "Zo%C3%AB") << "UTF-8, byte by byte";
  EXPECT_EQ(fhir::percent_encode("https://x/y"), "https%3A%2F%2Fx%2Fy");
}

TEST(token_parameter, escapes_then_encodes_both_parts_and_keeps_the_separator) {
  EXPECT_EQ(fhir::token_parameter("identifier", "urn:oid:1.2", "MRN-100,234"),
            "identifier=urn%3Aoid%3A1.2|MRN-100%5C%2C234");
  EXPECT_EQ(fhir::token_parameter("_tag", "s", "a|b\\c$d"), "_tag=s|a%5C%7Cb%5C%5Cc%5C%24d");
  EXPECT_EQ(fhir::token_parameter("identifier", "s", "é &#%+"), "identifier=s|%C3%A9%20%26%23%25%2B");
}

}  // namespace
