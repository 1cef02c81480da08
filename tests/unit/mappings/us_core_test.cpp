// US Core 6.1.0: the profiles each resource claims, the must-support elements the record feeds,
// the optional demographics of the contract, and the connector's own extension definitions.
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "mappings/extension_definitions.h"
#include "support/test_support.h"

namespace {

using namespace mappings;
using test_support::example;
using test_support::map_record;

std::string str(const rapidjson::Value& v) { return v.GetString(); }

mappings::read_result read(std::string_view json) {
  return mappings::read_record(json, test_support::shipped_tables());
}

std::string message_at(const mappings::read_result& r, std::string_view path) {
  for (const auto& i : r.problems) {
    if (i.path == path) return i.message;
  }
  return "<no problem at " + std::string(path) + ">";
}

// The consultation example with its patient's optional demographics replaced.
std::string consultation_with(std::string_view from, std::string_view to) {
  std::string text = test_support::read_text(test_support::source_path("mappings/examples/consultation.json"));
  const auto at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) text.replace(at, from.size(), to);
  return text;
}

const rapidjson::Value& patient_of(const test_support::mapped& m) { return *m.resources("Patient").at(0); }

std::string profile_of(const rapidjson::Value& resource) {
  if (!resource.HasMember("meta")) return "";
  return str(resource["meta"]["profile"][0]);
}

TEST(us_core_profiles, each_resource_type_with_a_profile_claims_it) {
  const std::string base = "http://hl7.org/fhir/us/core/StructureDefinition/";
  const auto m = map_record(example("consultation"));
  EXPECT_EQ(profile_of(patient_of(m)), base + "us-core-patient");
  EXPECT_EQ(profile_of(*m.resources("Practitioner").at(0)), base + "us-core-practitioner");
  EXPECT_EQ(profile_of(*m.resources("Organization").at(0)), base + "us-core-organization");
  EXPECT_EQ(profile_of(m.resource("Encounter", "encounter")), base + "us-core-encounter");
  EXPECT_EQ(profile_of(m.resource("Condition", "condition")), base + "us-core-condition-encounter-diagnosis");
  EXPECT_EQ(profile_of(m.resource("Observation", "observation/headache-days")), base + "us-core-simple-observation");
  EXPECT_EQ(profile_of(m.resource("Observation", "observation/midas")),
            base + "us-core-observation-screening-assessment");
  EXPECT_EQ(profile_of(m.resource("ServiceRequest", "service-request/treatment-course")),
            base + "us-core-servicerequest");
  EXPECT_EQ(profile_of(*m.resources("Provenance").at(0)), base + "us-core-provenance");
  // US Core has no profile for these: they claim none rather than a wrong one.
  EXPECT_EQ(profile_of(*m.resources("MedicationStatement").at(0)), "");

  const auto p = map_record(example("procedure"));
  EXPECT_EQ(profile_of(p.resource("Procedure", "procedure")), base + "us-core-procedure");
  EXPECT_EQ(profile_of(p.resource("Medication", "medication")), base + "us-core-medication");
  EXPECT_EQ(profile_of(*p.resources("MedicationAdministration").at(0)), "");
  EXPECT_EQ(profile_of(*p.resources("ChargeItem").at(0)), "");
}

TEST(us_core_encounter, type_has_snomed_first_and_the_local_code_second) {
  const auto m = map_record(example("consultation"));
  const auto& type = m.resource("Encounter", "encounter")["type"][0]["coding"];
  ASSERT_EQ(type.Size(), 2u);
  EXPECT_EQ(str(type[0]["system"]), "http://snomed.info/sct");
  EXPECT_EQ(str(type[0]["code"]), "308335008");
  EXPECT_EQ(str(type[1]["code"]), "botox-consultation");
}

TEST(us_core_encounter, participant_is_typed_and_the_reason_is_referenced) {
  const auto m = map_record(example("consultation"));
  const auto& e = m.resource("Encounter", "encounter");
  EXPECT_EQ(str(e["participant"][0]["type"][0]["coding"][0]["code"]), "PPRF");
  EXPECT_EQ(str(e["participant"][0]["period"]["start"]), str(e["period"]["start"]));
  // The consultation was for the Condition it records, in the same bundle.
  EXPECT_EQ(str(e["reasonReference"][0]["reference"]), str(m.entry_of("Condition", "condition")["fullUrl"]));

  // A follow-up reviews the procedure.
  const auto f = map_record(example("follow_up"), test_support::history_for("follow_up"));
  const std::string reviewed = str(f.resource("Encounter", "encounter")["reasonReference"][0]["reference"]);
  EXPECT_EQ(reviewed.rfind("Procedure?identifier=", 0), 0u) << reviewed;
}

TEST(us_core_procedure, based_on_the_treatment_course_the_consultation_planned) {
  const patient_history with_consultation({example("consultation")});
  const auto seen = map_record(example("procedure"), with_consultation);
  const auto& proc = seen.resource("Procedure", "procedure");
  ASSERT_TRUE(proc.HasMember("basedOn"));
  const std::string based_on = str(proc["basedOn"][0]["reference"]);
  EXPECT_EQ(based_on.rfind("ServiceRequest?identifier=", 0), 0u) << based_on;
  EXPECT_NE(based_on.find("service-request%2Ftreatment-course"), std::string::npos) << based_on;
  EXPECT_EQ(str(seen.resource("Encounter", "encounter")["reasonReference"][0]["reference"]).rfind("Condition?", 0), 0u);

  // Without the consultation (or when it did not recommend Botox) there is nothing to point at,
  // and a dangling conditional reference would fail the whole transaction.
  const auto unseen = map_record(example("procedure"));
  EXPECT_FALSE(unseen.resource("Procedure", "procedure").HasMember("basedOn"));
  EXPECT_FALSE(unseen.resource("Encounter", "encounter").HasMember("reasonReference"));
  clinic_record deferred = example("consultation");
  std::get<consultation>(deferred.body).decision = consultation_decision::defer;
  const auto after_defer = map_record(example("procedure"), patient_history({deferred}));
  EXPECT_FALSE(after_defer.resource("Procedure", "procedure").HasMember("basedOn"));
}

TEST(us_core_condition, carries_the_asserted_date) {
  const auto m = map_record(example("consultation"));
  const auto& ext = m.resource("Condition", "condition")["extension"][0];
  EXPECT_EQ(str(ext["url"]), "http://hl7.org/fhir/StructureDefinition/condition-assertedDate");
  EXPECT_EQ(str(ext["valueDateTime"]), "2026-08-03T09:30:00-05:00");
}

TEST(us_core_provenance, every_agent_acts_on_behalf_of_the_clinic) {
  const auto m = map_record(example("consultation"));
  const auto& prov = *m.resources("Provenance").at(0);
  std::string clinic;
  for (const auto& e : m.bundle["entry"].GetArray()) {
    if (str(e["resource"]["resourceType"]) == "Organization") clinic = str(e["fullUrl"]);
  }
  ASSERT_FALSE(clinic.empty());
  std::vector<std::string> types;
  for (const auto& agent : prov["agent"].GetArray()) {
    types.push_back(str(agent["type"]["coding"][0]["code"]));
    EXPECT_EQ(str(agent["onBehalfOf"]["reference"]), clinic);
  }
  EXPECT_EQ(types, (std::vector<std::string>{"assembler", "transmitter", "author"}));
}

TEST(us_core_patient, optional_demographics_reach_the_patient) {
  const auto m = map_record(example("consultation"));
  const auto& p = patient_of(m);
  EXPECT_EQ(str(p["name"][0]["use"]), "official");
  EXPECT_EQ(str(p["telecom"][0]["use"]), "mobile");
  EXPECT_EQ(str(p["telecom"][1]["use"]), "home");
  EXPECT_EQ(str(p["address"][0]["line"][1]), "Apt 2");
  EXPECT_EQ(str(p["address"][0]["postalCode"]), "62701");
  EXPECT_EQ(str(p["communication"][0]["language"]["coding"][0]["system"]), "urn:ietf:bcp:47");
  EXPECT_EQ(str(p["communication"][0]["language"]["coding"][0]["code"]), "en-US");
  const auto& race = p["extension"][0];
  EXPECT_EQ(str(race["url"]), "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race");
  ASSERT_EQ(race["extension"].Size(), 3u);
  EXPECT_EQ(str(race["extension"][0]["valueCoding"]["code"]), "2106-3");
  EXPECT_EQ(str(race["extension"][1]["valueCoding"]["code"]), "2028-9");
  EXPECT_EQ(str(race["extension"][2]["url"]), "text");
  EXPECT_EQ(str(race["extension"][2]["valueString"]), "White, Asian");
  const auto& ethnicity = p["extension"][1];
  EXPECT_EQ(str(ethnicity["url"]), "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity");
  EXPECT_EQ(str(ethnicity["extension"][0]["valueCoding"]["code"]), "2186-5");

  // The procedure example gives none of them: nothing is invented.
  const auto procedure = map_record(example("procedure"));  // kept: patient_of refers into it
  const auto& bare = patient_of(procedure);
  for (const char* absent : {"extension", "telecom", "address", "communication"}) {
    EXPECT_FALSE(bare.HasMember(absent)) << absent;
  }
}

TEST(us_core_patient, declined_race_is_the_null_flavor_us_core_lists) {
  const auto r = read(consultation_with(R"("race": ["white", "asian"])", R"("race": ["declined"])"));
  ASSERT_TRUE(r.record);
  const auto m = map_record(*r.record);
  const auto& race = patient_of(m)["extension"][0]["extension"];
  EXPECT_EQ(str(race[0]["valueCoding"]["system"]), "http://terminology.hl7.org/CodeSystem/v3-NullFlavor");
  EXPECT_EQ(str(race[0]["valueCoding"]["code"]), "ASKU");
  EXPECT_EQ(str(race[1]["valueString"]), "Declined to answer");
}

TEST(us_core_patient, demographics_the_reader_refuses) {
  const auto unknown_and_white = read(consultation_with(R"("race": ["white", "asian"])", R"("race": ["white", "unknown"])"));
  EXPECT_EQ(message_at(unknown_and_white, "consultation.patient.race"), "unknown or declined must stand alone");
  const auto twice = read(consultation_with(R"("race": ["white", "asian"])", R"("race": ["white", "white"])"));
  EXPECT_EQ(message_at(twice, "consultation.patient.race[1]"), "is listed twice");
  const auto made_up = read(consultation_with(R"("race": ["white", "asian"])", R"("race": ["martian"])"));
  EXPECT_EQ(message_at(made_up, "consultation.patient.race[0]").rfind("must be one of: ", 0), 0u);
  const auto ethnicity = read(consultation_with(R"("ethnicity": "not-hispanic-or-latino")", R"("ethnicity": "latinx")"));
  EXPECT_FALSE(ethnicity.record);
  const auto language = read(consultation_with(R"("language": "en-US")", R"("language": "English")"));
  EXPECT_EQ(message_at(language, "consultation.patient.language"), "must be a BCP-47 language tag such as en or es-MX");
  const auto empty_address = read(consultation_with(
      R"("address": { "line": ["100 Example Street", "Apt 2"], "city": "Springfield", "state": "IL", "postal_code": "62701", "country": "US" })",
      R"("address": {})"));
  EXPECT_EQ(message_at(empty_address, "consultation.patient.address"),
            "must give at least one of line, city, state, postal_code, country");
  const auto use_alone = read(consultation_with(R"("phone": "+1-555-0100",)", ""));
  EXPECT_EQ(message_at(use_alone, "consultation.patient.phone_use"), "is given without phone");
  const auto bad_use = read(consultation_with(R"("email_use": "home")", R"("email_use": "pager")"));
  EXPECT_FALSE(bad_use.record);
}

TEST(extension_definitions, are_rebased_to_the_configured_identifier_base) {
  const std::string dir = test_support::source_path("mappings/profiles");
  const std::string shipped = extension_definitions(dir, "https://clinic.example/fhir");
  rapidjson::Document doc;
  doc.Parse(shipped.data(), shipped.size());
  ASSERT_FALSE(doc.HasParseError());
  std::vector<std::string> urls;
  for (const auto& e : doc["entry"].GetArray()) {
    urls.push_back(str(e["resource"]["url"]));
    EXPECT_EQ(str(e["resource"]["resourceType"]), "StructureDefinition");
  }
  EXPECT_EQ(urls, (std::vector<std::string>{"https://clinic.example/fhir/StructureDefinition/billing-modifier",
                                            "https://clinic.example/fhir/StructureDefinition/preventive-drug-class"}));

  const std::string other = extension_definitions(dir, "https://ehr.northside.example/ids");
  EXPECT_EQ(other.find("https://clinic.example/fhir/StructureDefinition/"), std::string::npos);
  rapidjson::Document rebased;
  rebased.Parse(other.data(), other.size());
  ASSERT_FALSE(rebased.HasParseError());
  const auto& sd = rebased["entry"][1]["resource"];
  EXPECT_EQ(str(sd["url"]), "https://ehr.northside.example/ids/StructureDefinition/preventive-drug-class");
  // The fixed Extension.url moves with it, so the definition validates what the connector writes.
  bool fixed = false;
  for (const auto& element : sd["snapshot"]["element"].GetArray()) {
    if (str(element["id"]) == "Extension.url") fixed = str(element["fixedUri"]) == str(sd["url"]);
  }
  EXPECT_TRUE(fixed);
}

TEST(extension_definitions, the_mapper_writes_exactly_the_urls_they_define) {
  clinic_record r = example("consultation");
  const auto m = map_record(r);
  const auto& statement = *m.resources("MedicationStatement").at(0);
  EXPECT_EQ(str(statement["extension"][0]["url"]), "https://clinic.example/fhir/StructureDefinition/preventive-drug-class");
  // The trial's length is a standard element now, not an extension.
  EXPECT_EQ(statement["extension"].Size(), 1u);
  EXPECT_EQ(str(statement["dosage"][0]["timing"]["repeat"]["boundsDuration"]["code"]), "wk");
  const auto p = map_record(example("procedure"));
  bool modifier = false;
  for (const auto* charge : p.resources("ChargeItem")) {
    if (charge->HasMember("extension")) {
      EXPECT_EQ(str((*charge)["extension"][0]["url"]), "https://clinic.example/fhir/StructureDefinition/billing-modifier");
      modifier = true;
    }
  }
  EXPECT_TRUE(modifier);
}

TEST(extension_definitions, a_folder_without_definitions_is_an_error_naming_it) {
  const auto empty = std::filesystem::temp_directory_path() / "migraine-no-profiles";
  std::filesystem::create_directories(empty);
  try {
    extension_definitions(empty.string(), "https://clinic.example/fhir");
    ADD_FAILURE() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("migraine-no-profiles"), std::string::npos) << e.what();
  }
  std::ofstream(empty / "broken.json") << R"({"resourceType":"ValueSet"})";
  EXPECT_THROW(extension_definitions(empty.string(), "https://clinic.example/fhir"), std::runtime_error);
  std::filesystem::remove_all(empty);
}

}  // namespace
