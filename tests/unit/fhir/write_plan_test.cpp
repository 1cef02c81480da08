// The plan read back from its transaction encoding: keys, modes and references as written;
// dependency order with a circle; references rewritten or dropped with what they leave empty;
// conditional references decoded exactly as transaction_writer encoded them.
#include "fhir/write_plan.h"

#include <gtest/gtest.h>

#include "fhir/json_writer.h"
#include "fhir/search_values.h"
#include "fhir/transaction_writer.h"

namespace {

using namespace fhir;

// Encounter <-> Condition refer to each other; Observation refers to both and to another
// record's Procedure by a conditional reference.
std::string bundle() {
  json_writer out;
  transaction_writer tx(out);
  tx.begin_bundle("urn:s", "r1");
  const resource_key enc{"Encounter", "urn:sys", "r1/encounter"}, cond{"Condition", "urn:sys", "r1/condition"},
      obs{"Observation", "urn:sys", "r1/obs"}, proc{"Procedure", "urn:sys", "MRN,1|x$\\ é"};
  tx.begin_entry(enc, write_mode::upsert);
  out.key("reasonReference");
  out.begin_array();
  out.begin_object();
  out.member("reference", urn_uuid_for(cond));
  out.end_object();
  out.end_array();
  tx.end_entry();
  tx.begin_entry(cond, write_mode::create_if_absent);
  out.key("encounter");
  out.begin_object();
  out.member("reference", urn_uuid_for(enc));
  out.end_object();
  tx.end_entry();
  tx.begin_entry(obs, write_mode::create_if_absent);
  out.key("partOf");
  out.begin_array();
  out.begin_object();
  out.member("reference", conditional_reference(proc));
  out.member("display", "the injection");
  out.end_object();
  out.end_array();
  out.key("focus");
  out.begin_array();
  out.begin_object();
  out.member("reference", urn_uuid_for(cond));
  out.end_object();
  out.end_array();
  tx.end_entry();
  tx.end_bundle();
  return std::string(out.view());
}

TEST(write_plan, reads_keys_modes_and_references_back) {
  std::string error;
  const auto plan = read_plan(bundle(), error);
  ASSERT_TRUE(plan) << error;
  ASSERT_EQ(plan->writes.size(), 3u);
  EXPECT_EQ(plan->bundle_value, "r1");
  EXPECT_EQ(plan->writes[0].type, "Encounter");
  EXPECT_EQ(plan->writes[0].mode, write_mode::upsert);
  EXPECT_EQ(plan->writes[0].key_value, "r1/encounter");
  EXPECT_EQ(plan->writes[1].mode, write_mode::create_if_absent);
  EXPECT_EQ(plan->writes[2].references.size(), 2u);
  // The other record's key, with every search-syntax character, decoded exactly.
  const auto target = read_conditional_reference(plan->writes[2].references[0]);
  ASSERT_TRUE(target);
  EXPECT_EQ(target->type, "Procedure");
  EXPECT_EQ(target->system, "urn:sys");
  EXPECT_EQ(target->value, "MRN,1|x$\\ é");
  EXPECT_FALSE(read_conditional_reference("Patient/12"));
  EXPECT_FALSE(read_plan(R"({"resourceType":"Bundle","type":"batch","entry":[]})", error));
  EXPECT_EQ(error, "the plan is not a transaction Bundle");
}

TEST(write_plan, dependency_order_follows_references_and_breaks_a_circle_at_its_edge_back) {
  std::string error;
  auto plan = *read_plan(bundle(), error);
  order_by_dependency(plan);
  // Encounter first refers to Condition: Condition goes first, then Encounter (its edge back to
  // Condition is not followed), then Observation after both.
  ASSERT_EQ(plan.writes.size(), 3u);
  EXPECT_EQ(plan.writes[0].type, "Condition");
  EXPECT_EQ(plan.writes[1].type, "Encounter");
  EXPECT_EQ(plan.writes[2].type, "Observation");
}

TEST(write_plan, references_are_rewritten_or_dropped_with_what_they_leave_empty) {
  std::string error;
  const auto plan = *read_plan(bundle(), error);
  const auto& obs = plan.writes[2];
  const std::string cond_urn = plan.writes[1].full_url;
  const auto rewritten = rewrite_references(obs.resource, [&](std::string_view ref) -> std::optional<std::string> {
    if (ref == cond_urn) return std::string("Condition/7");
    return std::nullopt;  // the Procedure: not at this EHR
  });
  EXPECT_NE(rewritten.find(R"("focus":[{"reference":"Condition/7"}])"), std::string::npos) << rewritten;
  EXPECT_EQ(rewritten.find("partOf"), std::string::npos) << "the Reference, its display, and the emptied array go";
  EXPECT_EQ(rewritten.find("the injection"), std::string::npos);
  const auto with = with_id(rewritten, "obs-1");
  EXPECT_EQ(with.rfind(R"({"resourceType":"Observation","id":"obs-1",)", 0), 0u) << with;
}

}  // namespace
