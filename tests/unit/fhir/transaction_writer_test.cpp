// Transaction entries: deterministic keys and the request each write mode sends.
#include "fhir/transaction_writer.h"

#include <regex>
#include <set>

#include <gtest/gtest.h>

#include "support/test_support.h"

namespace {

const std::string sys = "https://clinic.example/fhir/resource";
const std::string esys = "https%3A%2F%2Fclinic.example%2Ffhir%2Fresource";  // as a search value (search_values.h)

TEST(urn_uuid_for, is_a_lowercase_uuid_and_stable) {
  const fhir::resource_key key{"Encounter", sys, "CONS-1/encounter"};
  const std::string urn = fhir::urn_uuid_for(key);
  EXPECT_TRUE(std::regex_match(urn, std::regex("urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")))
      << urn;
  EXPECT_EQ(urn, fhir::urn_uuid_for(key));
}

TEST(urn_uuid_for, differs_by_type_system_and_value) {
  std::set<std::string> seen;
  for (int i = 0; i < 20000; ++i) {
    seen.insert(fhir::urn_uuid_for({"Observation", sys, "R-" + std::to_string(i) + "/observation"}));
  }
  seen.insert(fhir::urn_uuid_for({"Procedure", sys, "R-0/observation"}));
  seen.insert(fhir::urn_uuid_for({"Observation", sys + "x", "R-0/observation"}));
  EXPECT_EQ(seen.size(), 20002u);
}

TEST(conditional_reference, searches_by_identifier) {
  EXPECT_EQ(fhir::conditional_reference({"Procedure", sys, "P-1/procedure"}),
            "Procedure?identifier=" + esys + "|P-1%2Fprocedure");
}

std::string write_one(const fhir::resource_key& key, fhir::write_mode mode) {
  fhir::json_writer out;
  fhir::transaction_writer tx(out);
  tx.begin_bundle("urn:example:bundles", "b-1");
  tx.begin_entry(key, mode);
  tx.end_entry();
  tx.end_bundle();
  return std::string(out.view());
}

TEST(transaction_writer, create_if_absent_posts_with_if_none_exist) {
  const std::string text = write_one({"Encounter", sys, "C-1/encounter"}, fhir::write_mode::create_if_absent);
  EXPECT_NE(text.find(R"("request":{"method":"POST","url":"Encounter","ifNoneExist":"identifier=)" + esys +
                      R"(|C-1%2Fencounter"})"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find(R"("identifier":[{"system":")" + sys + R"(","value":"C-1/encounter"}])"),
            std::string::npos);
  EXPECT_NE(text.find(R"("type":"transaction")"), std::string::npos);
}

TEST(transaction_writer, upsert_is_a_conditional_put) {
  const std::string text = write_one({"Encounter", sys, "C-1/encounter"}, fhir::write_mode::upsert);
  EXPECT_NE(text.find(R"("request":{"method":"PUT","url":"Encounter?identifier=)" + esys + R"(|C-1%2Fencounter"})"),
            std::string::npos)
      << text;
}

TEST(transaction_writer, adverse_events_keep_their_identifier_but_are_matched_on_a_tag) {
  // R4 has no identifier search parameter for AdverseEvent: "AdverseEvent?identifier=" would be refused.
  const fhir::coding retracted{"urn:local", "entered-in-error", ""};
  fhir::json_writer out;
  fhir::transaction_writer tx(out);
  tx.begin_bundle("urn:example:bundles", "b-1");
  tx.begin_entry({"AdverseEvent", sys, "C-1/ae"}, fhir::write_mode::upsert, &retracted);
  tx.end_entry();
  tx.end_bundle();
  const std::string text(out.view());
  EXPECT_NE(text.find(R"("meta":{"tag":[{"system":")" + sys + R"(","code":"C-1/ae"},{"system":"urn:local","code":"entered-in-error"}]})"),
            std::string::npos) << text;
  EXPECT_NE(text.find(R"("url":"AdverseEvent?_tag=)" + esys + "|C-1%2Fae"), std::string::npos) << text;
  EXPECT_EQ(text.find("identifier="), std::string::npos) << text;
  EXPECT_NE(text.find(R"("identifier":{"system")"), std::string::npos) << text;
}

TEST(transaction_writer, single_identifier_types_get_an_object_and_provenance_a_tag) {
  const std::string ae = write_one({"AdverseEvent", sys, "C-1/ae"}, fhir::write_mode::create_if_absent);
  EXPECT_NE(ae.find(R"("identifier":{"system")"), std::string::npos) << ae;
  EXPECT_NE(ae.find(R"("ifNoneExist":"_tag=)"), std::string::npos) << ae;
  const std::string prov = write_one({"Provenance", sys, "C-1/r1"}, fhir::write_mode::create_if_absent);
  EXPECT_NE(prov.find(R"("meta":{"tag":[{"system":")" + sys + R"(","code":"C-1/r1"}]})"), std::string::npos)
      << prov;
  EXPECT_NE(prov.find(R"("ifNoneExist":"_tag=)" + esys + "|C-1%2Fr1"), std::string::npos) << prov;
  EXPECT_EQ(prov.find("\"identifier\":[{"), std::string::npos);
}

TEST(transaction_writer, remembers_what_it_wrote_for_provenance) {
  fhir::json_writer out;
  fhir::transaction_writer tx(out);
  tx.begin_bundle("urn:example:bundles", "b-1");
  const std::string a = tx.begin_entry({"Encounter", sys, "a"}, fhir::write_mode::create_if_absent);
  tx.end_entry();
  tx.begin_entry({"AdverseEvent", sys, "b"}, fhir::write_mode::upsert);
  tx.end_entry();
  tx.end_bundle();
  ASSERT_EQ(tx.written().size(), 2u);
  EXPECT_EQ(tx.written()[0], a);
  EXPECT_EQ(tx.entry_count(), 2u);
}

}  // namespace
