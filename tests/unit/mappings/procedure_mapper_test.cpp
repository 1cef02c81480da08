// procedure -> Bundle: what the EHR must be told about an injection session.
#include <map>

#include <gtest/gtest.h>

#include "mappings/bundle_mapper.h"
#include "mappings/preempt.h"
#include "support/test_support.h"

namespace {

using namespace mappings;
using test_support::example;
using test_support::map_record;

std::string str(const rapidjson::Value& v) { return v.GetString(); }

// The UCUM [USP'U] dose of each administration by body-site text ("temporalis, left").
std::map<std::string, double> doses(const test_support::mapped& m) {
  std::map<std::string, double> out;
  for (const auto* ma : m.resources("MedicationAdministration")) {
    const auto& dosage = (*ma)["dosage"];
    EXPECT_EQ(str(dosage["dose"]["code"]), "[USP'U]");
    EXPECT_EQ(str(dosage["dose"]["system"]), "http://unitsofmeasure.org");
    out[str(dosage["site"]["text"])] += dosage["dose"]["value"].GetDouble();
  }
  return out;
}

TEST(procedure_mapper, one_administration_per_muscle_and_side_with_the_units_given) {
  const auto m = map_record(example("procedure"));
  const auto d = doses(m);
  ASSERT_EQ(d.size(), 13u);
  EXPECT_EQ(d.at("corrugator, left"), 5);
  EXPECT_EQ(d.at("procerus, midline"), 5);
  EXPECT_EQ(d.at("frontalis, right"), 10);
  EXPECT_EQ(d.at("temporalis, left"), 25);  // 20 PREEMPT + 5 follow-the-pain
  EXPECT_EQ(d.at("temporalis, right"), 25);
  EXPECT_EQ(d.at("occipitalis, left"), 15);
  EXPECT_EQ(d.at("cervical paraspinal, right"), 10);
  EXPECT_EQ(d.at("trapezius, left"), 15);
  double total = 0;
  for (const auto& [site, units] : d) total += units;
  EXPECT_EQ(total, 165);

  const auto& temporalis = m.resource("MedicationAdministration", "administration/temporalis-left");
  EXPECT_EQ(str(temporalis["dosage"]["text"]), "25 U in 5 site(s), 1 of them follow-the-pain");
  EXPECT_EQ(str(temporalis["status"]), "completed");
  EXPECT_EQ(str(temporalis["partOf"][0]["reference"]), str(m.entry_of("Procedure", "procedure")["fullUrl"]));
  EXPECT_EQ(str(temporalis["medicationReference"]["reference"]),
            str(m.entry_of("Medication", "medication")["fullUrl"]));
  const auto& laterality = temporalis["dosage"]["site"]["extension"][0];
  EXPECT_EQ(str(laterality["url"]), "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-laterality-qualifier");
  EXPECT_EQ(str(laterality["valueCodeableConcept"]["coding"][0]["code"]), "7771000");
}

TEST(procedure_mapper, summed_doses_carry_no_floating_point_noise) {
  clinic_record r = example("procedure");
  auto& p = std::get<procedure>(r.body);
  p.follow_the_pain = {{muscle::trapezius, side::left, 1, 0.1}, {muscle::trapezius, side::left, 1, 0.2}};
  const auto m = map_record(r);
  EXPECT_NE(m.text.find(R"("dose":{"value":15.3,)"), std::string::npos);
  EXPECT_EQ(m.text.find("0000000"), std::string::npos);
}

TEST(procedure_mapper, medication_carries_ndc_lot_and_expiry) {
  const auto m = map_record(example("procedure"));
  const auto& med = m.resource("Medication", "medication");
  EXPECT_EQ(str(med["code"]["coding"][0]["system"]), "http://hl7.org/fhir/sid/ndc");
  EXPECT_EQ(str(med["code"]["coding"][0]["code"]), "0023-3921-02");
  EXPECT_EQ(str(med["batch"]["lotNumber"]), "C6211C3");
  EXPECT_EQ(str(med["batch"]["expirationDate"]), "2027-03-31");
}

TEST(procedure_mapper, procedure_is_cpt_64615_with_every_body_site) {
  const auto m = map_record(example("procedure"));
  const auto& p = m.resource("Procedure", "procedure");
  EXPECT_EQ(str(p["status"]), "completed");
  EXPECT_EQ(str(p["code"]["coding"][0]["code"]), "64615");
  EXPECT_EQ(str(p["code"]["coding"][0]["system"]), "http://www.ama-assn.org/go/cpt");
  EXPECT_EQ(p["bodySite"].Size(), 13u);
  EXPECT_EQ(str(p["performedPeriod"]["start"]), "2026-08-17T10:30:00-05:00");
  // Without the consultation in the history, the reason is a concept, not a dangling reference.
  EXPECT_TRUE(p.HasMember("reasonCode"));
  EXPECT_FALSE(p.HasMember("reasonReference"));
}

TEST(procedure_mapper, reason_refers_to_the_consultation_condition_when_known) {
  const auto m = map_record(example("procedure"), patient_history({example("consultation")}));
  const auto& p = m.resource("Procedure", "procedure");
  EXPECT_EQ(str(p["reasonReference"][0]["reference"]),
            "Condition?identifier=https%3A%2F%2Fclinic.example%2Ffhir%2Fresource|CONS-2026-0001%2Fcondition");
}

double charge_quantity(const test_support::mapped& m, std::string_view role) {
  return m.resource("ChargeItem", role)["quantity"]["value"].GetDouble();
}

std::string modifier(const test_support::mapped& m, std::string_view role) {
  const auto& c = m.resource("ChargeItem", role);
  if (!c.HasMember("extension")) return "";
  return str(c["extension"][0]["valueCodeableConcept"]["coding"][0]["code"]);
}

TEST(procedure_mapper, charges_64615_once_j0585_per_unit_and_discarded_with_jw) {
  const auto m = map_record(example("procedure"));
  EXPECT_EQ(m.resources("ChargeItem").size(), 3u);
  EXPECT_EQ(charge_quantity(m, "charge/cpt-64615"), 1);
  EXPECT_EQ(modifier(m, "charge/cpt-64615"), "");
  EXPECT_EQ(str(m.resource("ChargeItem", "charge/j0585-administered")["code"]["coding"][0]["code"]), "J0585");
  EXPECT_EQ(charge_quantity(m, "charge/j0585-administered"), 165);
  EXPECT_EQ(modifier(m, "charge/j0585-administered"), "");
  EXPECT_EQ(charge_quantity(m, "charge/j0585-discarded"), 35);
  EXPECT_EQ(modifier(m, "charge/j0585-discarded"), "JW");
}

TEST(procedure_mapper, nothing_discarded_is_jz_on_the_administered_line) {
  clinic_record r = example("procedure");
  std::get<procedure>(r.body).units_discarded = 0;
  const auto m = map_record(r);
  EXPECT_EQ(m.resources("ChargeItem").size(), 2u);
  EXPECT_FALSE(m.has("ChargeItem", "charge/j0585-discarded"));
  EXPECT_EQ(modifier(m, "charge/j0585-administered"), "JZ");
}

TEST(procedure_mapper, immediate_reactions_become_adverse_events_and_next_due_a_request) {
  const auto m = map_record(example("procedure"));
  const auto& ae = m.resource("AdverseEvent", "adverse-event/immediate/0");
  EXPECT_EQ(str(ae["actuality"]), "actual");
  EXPECT_EQ(str(ae["severity"]["coding"][0]["code"]), "mild");
  EXPECT_EQ(str(ae["event"]["text"]), "brief light-headedness");
  EXPECT_EQ(str(ae["suspectEntity"][0]["instance"]["reference"]),
            str(m.entry_of("Medication", "medication")["fullUrl"]));
  const auto& next = m.resource("ServiceRequest", "service-request/next-injection");
  EXPECT_EQ(str(next["occurrenceDateTime"]), "2026-11-09");

  clinic_record r = example("procedure");
  std::get<procedure>(r.body).next_due.reset();
  const auto defaulted = map_record(r);
  EXPECT_EQ(str(defaulted.resource("ServiceRequest", "service-request/next-injection")["occurrenceDateTime"]),
            "2026-11-09");  // visit 2026-08-17 + 12 weeks
}

TEST(procedure_mapper, flags_become_detected_issues_implicating_the_resources) {
  clinic_record r = example("procedure");
  std::get<procedure>(r.body).product.expiration = *parse_date("2026-08-01");
  const auto m = map_record(r);
  ASSERT_EQ(m.outcome.flags.size(), 1u);
  const auto& di = m.resource("DetectedIssue", "detected-issue/product-expired");
  EXPECT_EQ(str(di["severity"]), "high");
  EXPECT_EQ(str(di["status"]), "final");
  EXPECT_EQ(di["implicated"].Size(), 2u);
  EXPECT_EQ(str(di["implicated"][0]["reference"]), str(m.entry_of("Medication", "medication")["fullUrl"]));
  EXPECT_EQ(str(di["detail"]), "lot used on 2026-08-17, after its expiration date 2026-08-01");
}

}  // namespace

namespace {

// The note written where the EHR takes no MedicationAdministration, ChargeItem or AdverseEvent:
// read against the domain reference (units per muscle and side, lot and expiry, 64615 once, J0585
// for what was given, J0585 with JW for what was discarded, JZ when nothing was), and summing to
// the same totals the structured resources carry.
TEST(folded_note, says_what_the_administrations_charges_and_reactions_would_have) {
  const auto record = example("procedure");
  const auto& p = std::get<procedure>(record.body);
  const bundle_mapper mapper(test_support::default_config(), test_support::shipped_tables());
  const std::string all = mapper.describe(record, {"MedicationAdministration", "ChargeItem", "AdverseEvent"});
  EXPECT_NE(all.find("Written as a note because this EHR does not take MedicationAdministration, ChargeItem, "
                     "AdverseEvent"), std::string::npos) << all;
  EXPECT_NE(all.find("lot " + p.product.lot + ", expires " + p.product.expiration.iso()), std::string::npos) << all;
  double units = 0;
  int lines = 0;
  for (const auto& d : p.doses_by_site()) {
    ++lines;
    units += d.units;
  }
  std::size_t site_lines = 0;
  for (std::size_t at = all.find(" U in "); at != std::string::npos; at = all.find(" U in ", at + 1)) ++site_lines;
  EXPECT_EQ(site_lines, static_cast<std::size_t>(lines) + 1) << "a line per muscle and side, and the total";
  EXPECT_NE(all.find("Total administered: " + format_units(units) + " U"), std::string::npos) << all;
  EXPECT_NE(all.find("CPT 64615 (chemodenervation for chronic migraine) x1"), std::string::npos);
  ASSERT_GT(p.units_discarded, 0);
  EXPECT_NE(all.find("J0585 x" + format_units(p.units_discarded) + " U discarded (modifier JW)"), std::string::npos) << all;
  EXPECT_EQ(all.find("JZ"), std::string::npos);
  for (const auto& r : p.immediate_reactions) EXPECT_NE(all.find(r.reaction), std::string::npos);

  // Only what is folded is said; a type the record does not yield says nothing.
  const std::string charges = mapper.describe(record, {"ChargeItem"});
  EXPECT_EQ(charges.find("Units per muscle"), std::string::npos);
  EXPECT_NE(charges.find("CPT 64615"), std::string::npos);
  EXPECT_EQ(mapper.describe(example("consultation"), {"ChargeItem"}), "");
}

}  // namespace
