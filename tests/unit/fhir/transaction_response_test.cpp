// Reading the EHR's transaction-response: what each entry's status and location say, as text a
// JSON writer may copy whatever the EHR sent.
#include "fhir/transaction_response.h"

#include <gtest/gtest.h>

namespace {

TEST(transaction_response, reads_each_entrys_status_and_location) {
  const auto r = fhir::read_transaction_response(
      R"({"resourceType":"Bundle","type":"transaction-response","entry":[)"
      R"({"response":{"status":"201 Created","location":"Encounter/e1/_history/1"}},{"response":{"status":"200 OK"}}]})");
  ASSERT_TRUE(r.has_value());
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].status, "201 Created");
  EXPECT_EQ((*r)[0].location, "Encounter/e1/_history/1");
  EXPECT_EQ((*r)[1].status, "200 OK");
  EXPECT_EQ((*r)[1].location, "");
}

TEST(transaction_response, is_not_another_bundle) {
  EXPECT_FALSE(fhir::read_transaction_response(R"({"resourceType":"Bundle","type":"batch-response"})").has_value());
  EXPECT_FALSE(fhir::read_transaction_response("not json").has_value());
}

// Found by tests/fuzz/transaction_response_fuzz: RapidJSON 1.1 decodes a lone low surrogate
// escape into the bytes ED B0 80, which are not UTF-8; kept as they were, they made the record's
// kept answer (and /api/records) invalid JSON.
TEST(transaction_response, a_lone_surrogate_escape_becomes_a_replacement_character) {
  const auto r = fhir::read_transaction_response(
      R"({"resourceType":"Bundle","type":"transaction-response","entry":[)"
      R"({"response":{"status":"201 Created","location":"Encounter/enc-1\uDC00/_history/1"}}]})");
  ASSERT_TRUE(r.has_value());
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].location, "Encounter/enc-1\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD/_history/1");
}

TEST(transaction_response, well_formed_utf8_stays_as_it_is) {
  const auto r = fhir::read_transaction_response(
      R"({"resourceType":"Bundle","type":"transaction-response","entry":[{"response":{"status":"201 Créé \u00e9 😀"}}]})");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ((*r)[0].status, "201 Créé é 😀");
}

}  // namespace
