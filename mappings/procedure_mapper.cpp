// procedure (an injection session) -> Medication (NDC, lot, expiry), Procedure (CPT 64615, body
// sites with laterality), one MedicationAdministration per muscle and side, charge items
// (64615 x1, J0585 administered, J0585 discarded with JW or JZ), AdverseEvents for immediate
// reactions, and the next session as a ServiceRequest.
#include "mappings/contract_names.h"
#include "mappings/preempt.h"
#include "mappings/record_context.h"

namespace mappings {
namespace {

inline constexpr std::string_view units_ucum = "[USP'U]";  // FDA labeling units, not U or [iU]

void write_body_site(record_context& ctx, muscle m, side s) {
  ctx.out.raw(ctx.fragments.body_sites[static_cast<std::size_t>(m)][static_cast<std::size_t>(s)]);
}

std::string write_medication(record_context& ctx, const procedure& p) {
  auto& out = ctx.out;
  const product_entry& product = *ctx.tables.product(p.product.ndc11);  // checked by the reader
  std::string url = ctx.begin("Medication", "medication");
  out.key("code");
  out.begin_object();
  out.key("coding");
  out.begin_array();
  fhir::write_coding(out, {"http://hl7.org/fhir/sid/ndc", product.ndc10, product.display});
  out.end_array();
  out.member("text", product.display);
  out.end_object();
  out.member("status", ctx.status("active"));
  out.key("batch");
  out.begin_object();
  out.member("lotNumber", p.product.lot);
  out.member("expirationDate", p.product.expiration.iso());
  out.end_object();
  ctx.end();
  return url;
}

// The consultation this session follows, when the connector has delivered it (so the EHR has its
// resources too); a conditional reference to anything else would fail the whole transaction.
const clinic_record* consultation_seen(const record_context& ctx, const procedure& p) {
  const clinic_record* consult =
      p.consultation_record_id ? ctx.history.find(*p.consultation_record_id) : nullptr;
  return consult != nullptr && consult->body.index() == consultation_kind ? consult : nullptr;
}

// The consultation's Condition when it was seen; otherwise the reason as a concept.
void write_reason(record_context& ctx, const procedure& p) {
  auto& out = ctx.out;
  if (const clinic_record* consult = consultation_seen(ctx, p)) {
    ctx.reference_list("reasonReference", fhir::conditional_reference(
                                   ctx.key_of(consult->record_id, "Condition", "condition")));
  } else {
    out.key("reasonCode");
    out.begin_array();
    ctx.write_concept_value("condition/chronic-migraine");
    out.end_array();
  }
}

// The treatment course the consultation planned, when it recommended Botox.
void write_based_on(record_context& ctx, const procedure& p) {
  const clinic_record* consult = consultation_seen(ctx, p);
  if (consult == nullptr ||
      std::get<consultation>(consult->body).decision != consultation_decision::recommend_botox) {
    return;
  }
  ctx.reference_list("basedOn", fhir::conditional_reference(ctx.key_of(
                                    consult->record_id, "ServiceRequest", "service-request/treatment-course")));
}

std::string write_procedure_resource(record_context& ctx, const procedure& p,
                                     const std::vector<site_dose>& doses,
                                     const std::string& medication) {
  auto& out = ctx.out;
  const auto& visit = ctx.record.visit;
  std::string url = ctx.begin("Procedure", "procedure");
  write_based_on(ctx, p);
  out.member("status", ctx.status("completed"));
  ctx.write_concept("code", "procedure/chemodenervation");
  ctx.subject();
  ctx.reference("encounter", ctx.encounter);
  out.key("performedPeriod");
  fhir::write_period(out, visit.start.text, visit.end ? std::string_view(visit.end->text) : "");
  ctx.reference("recorder", ctx.practitioner);
  ctx.performer_actor();
  write_reason(ctx, p);
  out.key("bodySite");
  out.begin_array();
  for (const auto& d : doses) write_body_site(ctx, d.site_muscle, d.site_side);
  out.end_array();
  ctx.notes();
  ctx.reference_list("usedReference", medication);
  ctx.end();
  return url;
}

void write_administrations(record_context& ctx, const std::vector<site_dose>& doses,
                           const std::string& medication, const std::string& procedure_url) {
  auto& out = ctx.out;
  std::string text;
  for (const auto& d : doses) {
    ctx.begin("MedicationAdministration", administration_role(d.site_muscle, d.site_side));
    out.member("status", ctx.status("completed"));
    ctx.reference("medicationReference", medication);
    ctx.subject();
    ctx.reference("context", ctx.encounter);
    out.member("effectiveDateTime", ctx.record.visit.start.text);
    ctx.performer_actor();
    ctx.reference_list("partOf", procedure_url);
    out.key("dosage");
    out.begin_object();
    text = format_units(d.units) + " U in " + std::to_string(d.sites) + " site(s)";
    if (d.follow_the_pain_sites > 0) {
      text += ", " + std::to_string(d.follow_the_pain_sites) + " of them follow-the-pain";
    }
    out.member("text", text);
    out.key("site");
    write_body_site(ctx, d.site_muscle, d.site_side);
    out.key("dose");
    fhir::write_ucum_quantity(out, d.units, "U", units_ucum);
    out.end_object();
    ctx.end();
  }
}

void write_charge(record_context& ctx, std::string_view role, std::string_view code_key,
                  double quantity, std::string_view modifier_key, const std::string& procedure_url,
                  const std::string& medication) {
  auto& out = ctx.out;
  ctx.begin("ChargeItem", role);
  if (!modifier_key.empty()) {
    // R4 ChargeItem has no modifier element and HL7 no extension for one: the HCPCS modifier
    // travels in the connector's own (StructureDefinition in mappings/profiles/).
    out.key("extension");
    out.begin_array();
    out.begin_object();
    out.member("url", ctx.systems.billing_modifier_extension);
    out.key("valueCodeableConcept");
    ctx.write_concept_value(modifier_key);
    out.end_object();
    out.end_array();
  }
  out.member("status", ctx.status("billable"));
  ctx.write_concept("code", code_key);
  ctx.subject();
  ctx.reference("context", ctx.encounter);
  out.member("occurrenceDateTime", ctx.record.visit.start.text);
  ctx.performer_actor();
  out.key("quantity");
  out.begin_object();
  out.member_number("value", quantity);
  out.end_object();
  out.member("enteredDate", ctx.record.recorded_at.text);
  ctx.reference_list("service", procedure_url);
  if (!medication.empty()) {
    out.key("productReference");
    fhir::write_reference(out, medication);
  }
  ctx.end();
}

void write_immediate_reactions(record_context& ctx, const procedure& p, const std::string& medication) {
  auto& out = ctx.out;
  const auto& base = ctx.tables.concept_for("adverse-event/immediate-reaction");
  for (std::size_t i = 0; i < p.immediate_reactions.size(); ++i) {
    const auto& r = p.immediate_reactions[i];
    const std::string url = ctx.begin("AdverseEvent", "adverse-event/immediate/" + std::to_string(i));
    out.member("actuality", "actual");
    out.key("event");
    fhir::write_codeable_concept(out, {base.codings, r.reaction});
    ctx.subject();
    ctx.reference("encounter", ctx.encounter);
    out.member("date", ctx.record.visit.start.text);
    out.member("recordedDate", ctx.record.recorded_at.text);
    ctx.reference("recorder", ctx.practitioner);
    ctx.write_concept("severity",
                      "adverse-event-severity/" + std::string(name_of(severity_names, r.level)));
    out.key("suspectEntity");
    out.begin_array();
    out.begin_object();
    ctx.reference("instance", medication);
    out.end_object();
    out.end_array();
    ctx.end();
  }
}

void write_next_session(record_context& ctx, const procedure& p) {
  auto& out = ctx.out;
  const civil_date due =
      p.next_due ? *p.next_due : ctx.record.visit.start.local_date.plus_days(minimum_interval_days);
  ctx.begin("ServiceRequest", "service-request/next-injection");
  out.member("status", ctx.status("active"));
  out.member("intent", "plan");
  ctx.write_concept("code", "procedure/chemodenervation");
  ctx.subject();
  ctx.reference("encounter", ctx.encounter);
  out.member("occurrenceDateTime", due.iso());
  out.member("authoredOn", ctx.record.recorded_at.text);
  ctx.reference("requester", ctx.practitioner);
  write_reason(ctx, p);
  ctx.end();
}

}  // namespace

void write_procedure(record_context& ctx, const procedure& p) {
  const std::vector<site_dose> doses = p.doses_by_site();
  const clinic_record* consult = consultation_seen(ctx, p);
  write_encounter(ctx, "encounter-type/procedure",
                  consult == nullptr ? std::string()
                                     : fhir::conditional_reference(ctx.key_of(
                                           consult->record_id, "Condition", "condition")));
  const std::string medication = write_medication(ctx, p);
  const std::string procedure_url = write_procedure_resource(ctx, p, doses, medication);
  write_administrations(ctx, doses, medication, procedure_url);

  // Charge capture: 64615 once per session (bilateral by definition, no modifier 50); J0585 per
  // unit administered; discarded drug on its own J0585 line with JW, or JZ when none was wasted.
  write_charge(ctx, "charge/cpt-64615", "billing/cpt-64615", 1, "", procedure_url, "");
  const bool wasted = p.units_discarded > 0;
  write_charge(ctx, "charge/j0585-administered", "billing/j0585", p.administered_units(),
               wasted ? "" : "billing-modifier/jz", procedure_url, medication);
  if (wasted) {
    write_charge(ctx, "charge/j0585-discarded", "billing/j0585", p.units_discarded,
                 "billing-modifier/jw", procedure_url, medication);
  }

  write_immediate_reactions(ctx, p, medication);
  write_next_session(ctx, p);
}

}  // namespace mappings
