// follow_up -> Bundle: the response to treatment and references to the reviewed session.
#include <gtest/gtest.h>

#include "support/test_support.h"

namespace {

using namespace mappings;
using test_support::example;
using test_support::map_record;

std::string str(const rapidjson::Value& v) { return v.GetString(); }
// The resource identifier system, escaped and percent-encoded as a search value (fhir/search_values.h).
const std::string ids = "https%3A%2F%2Fclinic.example%2Ffhir%2Fresource|";

patient_history pathway() { return patient_history({example("consultation"), example("procedure")}); }

TEST(follow_up_mapper, response_is_the_percent_reduction_from_the_consultation_baseline) {
  const auto m = map_record(example("follow_up"), pathway());
  const auto& r = m.resource("Observation", "observation/headache-day-reduction");
  EXPECT_DOUBLE_EQ(r["valueQuantity"]["value"].GetDouble(), 54.5);  // (22 - 10) / 22
  EXPECT_EQ(str(r["valueQuantity"]["code"]), "%");
  EXPECT_EQ(r["component"][0]["valueInteger"].GetInt(), 22);  // baseline
  EXPECT_EQ(r["component"][1]["valueInteger"].GetInt(), 10);  // now
  EXPECT_EQ(r["component"][2]["valueInteger"].GetInt(), 1);   // cycles
  // Derived from this visit's count and the consultation's, found by identifier in the EHR.
  EXPECT_EQ(str(r["derivedFrom"][0]["reference"]),
            str(m.entry_of("Observation", "observation/headache-days")["fullUrl"]));
  EXPECT_EQ(str(r["derivedFrom"][1]["reference"]),
            "Observation?identifier=" + ids + "CONS-2026-0001%2Fobservation%2Fheadache-days");
  EXPECT_EQ(str(r["focus"][0]["reference"]), "Procedure?identifier=" + ids + "PROC-2026-0001%2Fprocedure");
  EXPECT_FALSE(m.outcome.waits_for_record);
}

TEST(follow_up_mapper, side_effects_suspect_the_sessions_administrations) {
  const auto m = map_record(example("follow_up"), pathway());
  const auto& ae = m.resource("AdverseEvent", "adverse-event/side-effect/0");
  EXPECT_EQ(str(ae["event"]["coding"][0]["code"]), "neck-pain");
  EXPECT_EQ(str(ae["outcome"]["coding"][0]["code"]), "resolved");
  EXPECT_EQ(str(ae["date"]), "2026-08-19");
  ASSERT_EQ(ae["suspectEntity"].Size(), 13u);
  EXPECT_EQ(str(ae["suspectEntity"][0]["instance"]["reference"]),
            "MedicationAdministration?identifier=" + ids + "PROC-2026-0001%2Fadministration%2Fcorrugator-left");
}

TEST(follow_up_mapper, without_its_procedure_it_waits_and_writes_nothing) {
  // Its bundle would refer to the procedure's resources in the EHR: sent first, it would fail.
  const auto alone = map_record(example("follow_up"));
  EXPECT_EQ(alone.outcome.result, mapping_result::waits);
  EXPECT_EQ(alone.outcome.waits_for_record, "PROC-2026-0001");
  const auto with_consultation_only = map_record(example("follow_up"), patient_history({example("consultation")}));
  EXPECT_EQ(with_consultation_only.outcome.result, mapping_result::waits);
}

TEST(follow_up_mapper, plan_is_recorded_with_the_reviewed_procedure_in_focus) {
  const auto m = map_record(example("follow_up"), pathway());
  const auto& plan = m.resource("Observation", "observation/treatment-plan");
  EXPECT_EQ(str(plan["valueCodeableConcept"]["coding"][0]["code"]), "continue");
  EXPECT_EQ(str(plan["focus"][0]["reference"]), "Procedure?identifier=" + ids + "PROC-2026-0001%2Fprocedure");
}

}  // namespace
