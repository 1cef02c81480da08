// consultation -> Bundle, and the rules every bundle follows (keys, write modes, retraction).
#include <set>

#include <gtest/gtest.h>

#include "support/test_support.h"

namespace {

using namespace mappings;
using test_support::example;
using test_support::map_record;

std::string str(const rapidjson::Value& v) { return v.GetString(); }

TEST(consultation_mapper, condition_carries_the_icd10_code_and_display) {
  const auto m = map_record(example("consultation"));
  const auto& c = m.resource("Condition", "condition");
  EXPECT_EQ(str(c["code"]["coding"][0]["system"]), "http://hl7.org/fhir/sid/icd-10-cm");
  EXPECT_EQ(str(c["code"]["coding"][0]["code"]), "G43.709");
  EXPECT_EQ(str(c["code"]["text"]), "Chronic migraine without aura, not intractable, without status migrainosus");
  EXPECT_EQ(str(c["category"][0]["coding"][0]["code"]), "encounter-diagnosis");
  EXPECT_EQ(str(c["clinicalStatus"]["coding"][0]["code"]), "active");
}

TEST(consultation_mapper, observations_carry_the_work_up_values) {
  const auto m = map_record(example("consultation"));
  EXPECT_EQ(m.resource("Observation", "observation/headache-days")["valueInteger"].GetInt(), 22);
  EXPECT_EQ(m.resource("Observation", "observation/migraine-days")["valueInteger"].GetInt(), 14);
  EXPECT_EQ(m.resource("Observation", "observation/pain-severity")["valueInteger"].GetInt(), 7);
  EXPECT_EQ(str(m.resource("Observation", "observation/pain-severity")["code"]["coding"][0]["code"]), "72514-3");
  EXPECT_EQ(m.resource("Observation", "observation/midas")["valueInteger"].GetInt(), 46);
  EXPECT_EQ(m.resource("Observation", "observation/hit6")["valueInteger"].GetInt(), 66);
  EXPECT_EQ(m.resource("Observation", "observation/acute-medication-days")["valueInteger"].GetInt(), 9);
  EXPECT_EQ(m.resource("Observation", "observation/headache-hours")["valueQuantity"]["value"].GetDouble(), 6);
  EXPECT_FALSE(m.resource("Observation", "observation/aura")["valueBoolean"].GetBool());
  EXPECT_EQ(m.resource("Observation", "observation/triggers")["component"].Size(), 2u);
}

TEST(consultation_mapper, prior_preventives_and_the_eligibility_finding) {
  const auto m = map_record(example("consultation"));
  const auto statements = m.resources("MedicationStatement");
  ASSERT_EQ(statements.size(), 3u);
  EXPECT_EQ(str((*statements[0])["medicationCodeableConcept"]["text"]), "propranolol");
  EXPECT_EQ(str((*statements[0])["status"]), "stopped");
  EXPECT_EQ(str((*statements[1])["statusReason"][0]["coding"][0]["code"]), "not-tolerated");
  const auto& e = m.resource("Observation", "observation/eligibility");
  EXPECT_EQ(str(e["valueCodeableConcept"]["coding"][0]["code"]), "recommend-botox");
  EXPECT_TRUE(e["component"][0]["valueBoolean"].GetBool());
  EXPECT_EQ(e["component"][1]["valueInteger"].GetInt(), 3);
  EXPECT_EQ(str(m.resource("ServiceRequest", "service-request/treatment-course")["intent"]), "plan");
}

TEST(consultation_mapper, no_treatment_request_unless_botox_is_recommended) {
  clinic_record r = example("consultation");
  std::get<consultation>(r.body).decision = consultation_decision::defer;
  EXPECT_TRUE(map_record(r).resources("ServiceRequest").empty());
}

// Rules for every bundle, checked on all three kinds.
TEST(every_bundle, has_unique_full_urls_and_resolves_every_urn_reference) {
  for (auto kind : {"consultation", "procedure", "follow_up"}) {
    const auto m = map_record(example(kind), test_support::history_for(kind));
    std::set<std::string> urls;
    for (const auto& e : m.bundle["entry"].GetArray()) {
      if (e.HasMember("fullUrl")) {
        EXPECT_TRUE(urls.insert(str(e["fullUrl"])).second) << kind;
      }
    }
    std::size_t refs = 0;
    for (std::size_t at = m.text.find("\"reference\":\"urn:uuid:"); at != std::string::npos;
         at = m.text.find("\"reference\":\"urn:uuid:", at + 1)) {
      const std::string urn = m.text.substr(at + 13, 45);
      EXPECT_TRUE(urls.contains(urn)) << kind << " dangling " << urn;
      ++refs;
    }
    EXPECT_GT(refs, 10u);
  }
}

TEST(every_bundle, is_identical_when_mapped_again) {
  for (auto kind : {"consultation", "procedure", "follow_up"}) {
    const auto history = test_support::history_for(kind);
    EXPECT_FALSE(map_record(example(kind), history).text.empty()) << kind;
    EXPECT_EQ(map_record(example(kind), history).text, map_record(example(kind), history).text) << kind;
  }
}

TEST(every_bundle, first_revision_creates_only_if_absent) {
  const auto m = map_record(example("procedure"));
  for (const auto& e : m.bundle["entry"].GetArray()) {
    EXPECT_EQ(str(e["request"]["method"]), "POST");
    EXPECT_TRUE(e["request"].HasMember("ifNoneExist"));
  }
  const auto& patient = m.entry_of("Patient", "MRN-100234");
  EXPECT_EQ(str(patient["request"]["ifNoneExist"]), "identifier=https%3A%2F%2Fclinic.example%2Ffhir%2Fmrn|MRN-100234");
  const auto& practitioner = m.resources("Practitioner");
  ASSERT_EQ(practitioner.size(), 1u);
  EXPECT_EQ(str((*practitioner[0])["identifier"][0]["system"]), "http://hl7.org/fhir/sid/us-npi");
}

TEST(every_bundle, an_amendment_updates_what_the_record_created) {
  clinic_record r = example("procedure");
  r.revision = 2;
  r.status = record_status::amended;
  const auto m = map_record(r);
  EXPECT_EQ(str(m.entry_of("Procedure", "procedure")["request"]["method"]), "PUT");
  EXPECT_EQ(str(m.entry_of("Procedure", "procedure")["request"]["url"]),
            "Procedure?identifier=https%3A%2F%2Fclinic.example%2Ffhir%2Fresource|PROC-2026-0001%2Fprocedure");
  // Shared resources are matched, never overwritten; the amendment gets its own Provenance.
  EXPECT_EQ(str(m.entry_of("Patient", "MRN-100234")["request"]["method"]), "POST");
  const auto& prov = *m.resources("Provenance").at(0);
  EXPECT_EQ(str(prov["meta"]["tag"][0]["code"]), "PROC-2026-0001/r2");
  EXPECT_EQ(str(prov["activity"]["coding"][0]["code"]), "UPDATE");
}

TEST(every_bundle, an_amendment_retracts_what_the_earlier_revision_made_and_this_one_does_not) {
  const clinic_record first = example("procedure");  // 35 U discarded: a JW line
  clinic_record second = first;
  second.revision = 2;
  second.status = record_status::amended;
  auto& p = std::get<procedure>(second.body);
  p.units_discarded = 0;              // now JZ, no discarded line
  p.immediate_reactions.clear();      // the reaction was recorded in error
  const auto m = map_record(second, patient_history({first}));

  const auto& discarded = m.entry_of("ChargeItem", "charge/j0585-discarded");
  EXPECT_EQ(str(discarded["request"]["method"]), "PUT");
  EXPECT_EQ(str(discarded["resource"]["status"]), "entered-in-error");
  EXPECT_EQ(str(m.resource("ChargeItem", "charge/j0585-administered")["status"]), "billable");
  const auto& reaction = m.entry_of("AdverseEvent", "adverse-event/immediate/0");
  EXPECT_EQ(str(reaction["request"]["url"]),
            "AdverseEvent?_tag=https%3A%2F%2Fclinic.example%2Ffhir%2Fresource|PROC-2026-0001%2Fadverse-event%2Fimmediate%2F0");
  EXPECT_EQ(str(reaction["resource"]["meta"]["tag"][1]["code"]), "entered-in-error");
  // Everything else is written once, by this revision; the Provenance covers the retraction too.
  EXPECT_EQ(m.resources("MedicationAdministration").size(), 13u);
  const auto& prov = *m.resources("Provenance").at(0);
  bool covers = false;
  for (const auto& t : prov["target"].GetArray()) covers |= str(t["reference"]) == str(discarded["fullUrl"]);
  EXPECT_TRUE(covers);

  // Without the earlier revision in the history there is nothing to compare with.
  EXPECT_FALSE(map_record(second).has("ChargeItem", "charge/j0585-discarded"));
}

TEST(every_bundle, a_revision_not_newer_than_one_seen_is_a_no_op) {
  clinic_record second = example("procedure");
  second.revision = 2;
  second.status = record_status::amended;
  const auto resent_first = map_record(example("procedure"), patient_history({second}));
  EXPECT_EQ(resent_first.outcome.result, mapping_result::stale);
  EXPECT_EQ(resent_first.outcome.newer_revision_seen, 2);
  EXPECT_EQ(map_record(second, patient_history({second})).outcome.result, mapping_result::stale);
  // Also after a retraction: an old revision must not bring retracted resources back.
  clinic_record retracted = second;
  retracted.status = record_status::entered_in_error;
  EXPECT_EQ(map_record(example("procedure"), patient_history({retracted})).outcome.result,
            mapping_result::stale);
}

TEST(every_bundle, entered_in_error_retracts_everything_the_record_produced) {
  clinic_record r = example("consultation");
  r.revision = 2;
  r.status = record_status::entered_in_error;
  const auto m = map_record(r);
  for (auto type : {"Encounter", "Observation", "MedicationStatement", "ServiceRequest"}) {
    for (const auto* res : m.resources(type)) EXPECT_EQ(str((*res)["status"]), "entered-in-error") << type;
  }
  const auto& c = m.resource("Condition", "condition");
  EXPECT_EQ(str(c["verificationStatus"]["coding"][0]["code"]), "entered-in-error");
  EXPECT_FALSE(c.HasMember("clinicalStatus"));  // con-5
  const auto& prov = *m.resources("Provenance").at(0);
  EXPECT_EQ(str(prov["activity"]["coding"][0]["code"]), "NULLIFY");
  // Its own Provenance even when sent at the revision of the record it retracts.
  EXPECT_EQ(str(prov["meta"]["tag"][0]["code"]), "CONS-2026-0001/r2/entered-in-error");

  clinic_record p = example("procedure");
  p.revision = 2;
  p.status = record_status::entered_in_error;
  const auto mp = map_record(p);
  // AdverseEvent has no status in R4: it is tagged, not deleted (servers refuse to delete what an
  // earlier Provenance references).
  const auto& ae = mp.resource("AdverseEvent", "adverse-event/immediate/0");
  EXPECT_EQ(str(ae["meta"]["tag"][1]["code"]), "entered-in-error");
  EXPECT_EQ(mp.text.find("DELETE"), std::string::npos);
  for (const auto* ma : mp.resources("MedicationAdministration")) EXPECT_EQ(str((*ma)["status"]), "entered-in-error");
  for (const auto* ci : mp.resources("ChargeItem")) EXPECT_EQ(str((*ci)["status"]), "entered-in-error");
}

TEST(every_bundle, provenance_names_the_connector_the_clinician_and_the_source_record) {
  const auto m = map_record(example("consultation"));
  const auto& prov = *m.resources("Provenance").at(0);
  EXPECT_EQ(str(prov["entity"][0]["what"]["identifier"]["value"]), "CONS-2026-0001");
  EXPECT_EQ(str(prov["recorded"]), "2026-08-03T10:12:00-05:00");
  // Targets: the record's own resources, not the shared Patient or Practitioner.
  const std::string patient = str(m.entry_of("Patient", "MRN-100234")["fullUrl"]);
  for (const auto& t : prov["target"].GetArray()) EXPECT_NE(str(t["reference"]), patient);
  EXPECT_EQ(prov["target"].Size(), m.bundle["entry"].Size() - 5);  // all but 4 shared + itself
}

}  // namespace
