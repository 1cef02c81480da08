// consultation -> Condition, Observations of the work-up, a MedicationStatement per prior
// preventive, the eligibility finding and, when Botox is recommended, the treatment-course
// ServiceRequest.
#include "mappings/contract_names.h"
#include "mappings/record_context.h"

namespace mappings {
namespace {

void write_condition(record_context& ctx, const consultation& c) {
  auto& out = ctx.out;
  const diagnosis_entry& dx = *ctx.tables.diagnosis(c.diagnosis_code);  // checked by the reader
  ctx.begin("Condition", "condition");
  // When the clinician asserted the diagnosis (R4 core's extension; US Core's Condition
  // Encounter Diagnosis profile lists it as must-support).
  out.key("extension");
  out.begin_array();
  out.begin_object();
  out.member("url", ctx.tables.extensions().asserted_date);
  out.member("valueDateTime", ctx.record.visit.start.text);
  out.end_object();
  out.end_array();
  // con-5: clinicalStatus must be absent when the condition is entered-in-error.
  if (!ctx.retracted) ctx.write_concept("clinicalStatus", "condition-clinical/active");
  ctx.write_concept("verificationStatus", ctx.retracted ? "condition-verification/entered-in-error"
                                                         : "condition-verification/confirmed");
  out.key("category");
  out.begin_array();
  ctx.write_concept_value("condition-category/encounter-diagnosis");
  out.end_array();
  out.key("code");
  out.begin_object();
  out.key("coding");
  out.begin_array();
  fhir::write_coding(out, {"http://hl7.org/fhir/sid/icd-10-cm", c.diagnosis_code, dx.display});
  for (const auto& also : dx.also) fhir::write_coding(out, also);
  out.end_array();
  out.member("text", dx.display);
  out.end_object();
  ctx.subject();
  ctx.reference("encounter", ctx.encounter);
  out.member("recordedDate", ctx.record.recorded_at.text);
  ctx.reference("recorder", ctx.practitioner);
  ctx.reference("asserter", ctx.practitioner);
  ctx.notes();
  ctx.end();
}

void write_prior_preventive(record_context& ctx, const prior_preventive& p, std::size_t index) {
  auto& out = ctx.out;
  ctx.begin("MedicationStatement", "medication-statement/" + std::to_string(index));
  // HL7 has no element or extension for a drug's class on R4 MedicationStatement: the
  // connector's own, whose StructureDefinition ships in mappings/profiles/.
  out.key("extension");
  out.begin_array();
  out.begin_object();
  out.member("url", ctx.systems.drug_class_extension);
  out.key("valueCodeableConcept");
  ctx.write_concept_value("drug-class/" + std::string(name_of(drug_class_names, p.klass)));
  out.end_object();
  out.end_array();
  // Contraindicated drugs were never taken; ongoing ones still are.
  std::string_view status = "stopped";
  if (p.outcome == preventive_outcome::ongoing) status = "active";
  if (p.outcome == preventive_outcome::contraindicated) status = "not-taken";
  out.member("status", ctx.status(status));
  out.key("statusReason");
  out.begin_array();
  ctx.write_concept_value(
                                        "preventive-outcome/" +
                                        std::string(name_of(preventive_outcome_names, p.outcome)));
  out.end_array();
  out.key("medicationCodeableConcept");
  out.begin_object();
  out.member("text", p.medication);
  out.end_object();
  ctx.subject();
  ctx.reference("context", ctx.encounter);
  out.member("dateAsserted", ctx.record.visit.start.text);
  ctx.reference("informationSource", ctx.practitioner);
  if (p.weeks) {
    // How long the trial lasted: the dosage's timing bounds, a standard element.
    out.key("dosage");
    out.begin_array();
    out.begin_object();
    out.key("timing");
    out.begin_object();
    out.key("repeat");
    out.begin_object();
    out.key("boundsDuration");
    fhir::write_ucum_quantity(out, *p.weeks, "weeks", "wk");
    out.end_object();
    out.end_object();
    out.end_object();
    out.end_array();
  }
  ctx.end();
}

void write_triggers(record_context& ctx, const std::vector<std::string>& triggers) {
  auto& out = ctx.out;
  begin_observation(ctx, "observation/triggers", "observation/triggers");
  out.key("component");
  out.begin_array();
  for (const auto& t : triggers) {
    out.begin_object();
    ctx.write_concept("code", "observation/trigger");
    out.member("valueString", t);
    out.end_object();
  }
  out.end_array();
  ctx.end();
}

}  // namespace

void write_consultation(record_context& ctx, const consultation& c) {
  auto& out = ctx.out;
  // The visit was for the diagnosis it confirms (a reference forward to the entry below).
  const std::string condition = fhir::urn_uuid_for(ctx.own_key("Condition", "condition"));
  write_encounter(ctx, "encounter-type/consultation", condition);
  write_condition(ctx, c);

  const std::string headache_days = write_integer_observation(
      ctx, "observation/headache-days", "observation/headache-days", c.headache_days_per_month);
  const std::string migraine_days = write_integer_observation(
      ctx, "observation/migraine-days", "observation/migraine-days", c.migraine_days_per_month);
  const std::string months = begin_observation(ctx, "observation/months-at-frequency",
                                               "observation/months-at-frequency");
  out.key("valueQuantity");
  fhir::write_ucum_quantity(out, c.months_at_frequency, "months", "mo");
  ctx.end();
  std::vector<std::string> criteria_evidence = {headache_days, migraine_days, months};
  if (c.headache_hours_per_day) {
    criteria_evidence.push_back(
        begin_observation(ctx, "observation/headache-hours", "observation/headache-hours"));
    out.key("valueQuantity");
    fhir::write_ucum_quantity(out, *c.headache_hours_per_day, "hours per day", "h/d");
    ctx.end();
  }
  if (c.average_pain) {
    write_integer_observation(ctx, "observation/pain-severity", "observation/pain-severity",
                              *c.average_pain);
  }
  if (c.score.midas) {
    write_integer_observation(ctx, "observation/midas", "observation/midas", *c.score.midas);
  }
  if (c.score.hit6) {
    write_integer_observation(ctx, "observation/hit6", "observation/hit6", *c.score.hit6);
  }
  if (c.acute_medication_days_per_month) {
    write_integer_observation(ctx, "observation/acute-medication-days",
                              "observation/acute-medication-days",
                              *c.acute_medication_days_per_month);
  }
  begin_observation(ctx, "observation/aura", "observation/aura");
  out.member_bool("valueBoolean", c.aura);
  ctx.end();
  if (!c.triggers.empty()) write_triggers(ctx, c.triggers);

  for (std::size_t i = 0; i < c.prior_preventives.size(); ++i) {
    write_prior_preventive(ctx, c.prior_preventives[i], i);
  }

  // The clinician's decision, with the criteria as the connector assessed them.
  const eligibility_assessment e = assess_eligibility(c, ctx.tables);
  begin_observation(ctx, "observation/eligibility", "observation/eligibility");
  out.key("valueCodeableConcept");
  ctx.write_concept_value("decision/" + std::string(name_of(decision_names, c.decision)));
  fhir::write_reference_array(out, "derivedFrom", criteria_evidence);
  out.key("component");
  out.begin_array();
  out.begin_object();
  ctx.write_concept("code", "observation/meets-chronic-migraine-criteria");
  out.member_bool("valueBoolean", e.meets_chronic_migraine_criteria);
  out.end_object();
  out.begin_object();
  ctx.write_concept("code", "observation/failed-preventive-classes");
  out.member("valueInteger", e.failed_preventive_classes);
  out.end_object();
  out.end_array();
  ctx.end();

  if (c.decision == consultation_decision::recommend_botox) {
    ctx.begin("ServiceRequest", "service-request/treatment-course");
    out.member("status", ctx.status("active"));
    out.member("intent", "plan");
    ctx.write_concept("code", "procedure/chemodenervation");
    ctx.subject();
    ctx.reference("encounter", ctx.encounter);
    // PREEMPT: one session every 12 weeks.
    out.key("occurrenceTiming");
    out.begin_object();
    out.key("repeat");
    out.begin_object();
    out.member("frequency", 1);
    out.member("period", 12);
    out.member("periodUnit", "wk");
    out.end_object();
    out.end_object();
    out.member("authoredOn", ctx.record.visit.start.text);
    ctx.reference("requester", ctx.practitioner);
    ctx.reference_list("reasonReference", condition);
    ctx.end();
  }
}

}  // namespace mappings
