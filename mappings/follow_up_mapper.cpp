// follow_up -> Observations of the review, the response (percent fewer headache days than
// baseline, derived from the observations it compares), the treatment plan, and an AdverseEvent
// per side effect. It points at the reviewed Procedure and its administrations through
// conditional references, which the EHR resolves inside the transaction.
#include <algorithm>

#include "mappings/contract_names.h"
#include "mappings/record_context.h"

namespace mappings {
namespace {

// Conditional references to what the reviewed procedure record created in the EHR.
struct reviewed_session {
  std::string procedure;
  std::vector<std::string> suspects;  // its administrations
};

reviewed_session reviewed_references(record_context& ctx, const follow_up& f,
                                     const response_assessment& r) {
  reviewed_session s;
  const std::string& id = f.procedure_record_id;
  s.procedure = fhir::conditional_reference(ctx.key_of(id, "Procedure", "procedure"));
  // The same per-muscle-and-side grouping the procedure's administrations were written with.
  for (const site_dose& d : std::get<procedure>(r.reviewed_procedure->body).doses_by_site()) {
    s.suspects.push_back(fhir::conditional_reference(ctx.key_of(
        id, "MedicationAdministration", administration_role(d.site_muscle, d.site_side))));
  }
  return s;
}

void write_response(record_context& ctx, const follow_up& f, const response_assessment& r,
                    const std::string& headache_days, const std::string& procedure) {
  auto& out = ctx.out;
  begin_observation(ctx, "observation/headache-day-reduction", "observation/headache-day-reduction");
  out.key("valueQuantity");
  fhir::write_ucum_quantity(out, *r.reduction_percent, "%", "%");
  ctx.reference_list("focus", procedure);
  std::vector<std::string> derived = {headache_days};
  if (r.baseline->consultation_record_id) {
    derived.push_back(fhir::conditional_reference(ctx.key_of(
        *r.baseline->consultation_record_id, "Observation", "observation/headache-days")));
  }
  fhir::write_reference_array(out, "derivedFrom", derived);
  out.key("component");
  out.begin_array();
  out.begin_object();
  ctx.write_concept("code", "observation/baseline-headache-days");
  out.member("valueInteger", r.baseline->headache_days);
  out.end_object();
  out.begin_object();
  ctx.write_concept("code", "observation/headache-days");
  out.member("valueInteger", f.headache_days_per_month);
  out.end_object();
  if (r.cycles) {
    out.begin_object();
    ctx.write_concept("code", "observation/treatment-cycles");
    out.member("valueInteger", *r.cycles);
    out.end_object();
  }
  out.end_array();
  ctx.end();
}

void write_side_effects(record_context& ctx, const follow_up& f, const reviewed_session& session) {
  auto& out = ctx.out;
  for (std::size_t i = 0; i < f.side_effects.size(); ++i) {
    const side_effect& e = f.side_effects[i];
    const std::string url = ctx.begin("AdverseEvent", "adverse-event/side-effect/" + std::to_string(i));
    out.member("actuality", "actual");
    const auto& effect = ctx.tables.concept_for(
        "side-effect/" + std::string(name_of(side_effect_names, e.effect)));
    out.key("event");
    fhir::write_codeable_concept(out, {effect.codings, e.description ? *e.description : effect.text});
    ctx.subject();
    ctx.reference("encounter", ctx.encounter);
    if (e.onset) out.member("date", e.onset->iso());
    out.member("recordedDate", ctx.record.recorded_at.text);
    ctx.reference("recorder", ctx.practitioner);
    ctx.write_concept("severity",
                      "adverse-event-severity/" + std::string(name_of(severity_names, e.level)));
    if (e.resolved) {
      ctx.write_concept("outcome",
                        *e.resolved ? "adverse-event-outcome/resolved" : "adverse-event-outcome/ongoing");
    }
    out.key("suspectEntity");
    out.begin_array();
    for (const auto& suspect : session.suspects) {
      out.begin_object();
      ctx.reference("instance", suspect);
      out.end_object();
    }
    out.end_array();
    ctx.end();
  }
}

}  // namespace

// Only called once the reviewed procedure is in the history (bundle_mapper holds it back before).
void write_follow_up(record_context& ctx, const follow_up& f) {
  auto& out = ctx.out;
  const response_assessment r = assess_response(f, ctx.record, ctx.history);
  const reviewed_session session = reviewed_references(ctx, f, r);

  write_encounter(ctx, "encounter-type/follow-up", session.procedure);
  const std::string headache_days = write_integer_observation(
      ctx, "observation/headache-days", "observation/headache-days", f.headache_days_per_month);
  write_integer_observation(ctx, "observation/migraine-days", "observation/migraine-days",
                            f.migraine_days_per_month);
  if (f.average_pain) {
    write_integer_observation(ctx, "observation/pain-severity", "observation/pain-severity",
                              *f.average_pain);
  }
  if (f.score.midas) {
    write_integer_observation(ctx, "observation/midas", "observation/midas", *f.score.midas);
  }
  if (f.score.hit6) {
    write_integer_observation(ctx, "observation/hit6", "observation/hit6", *f.score.hit6);
  }
  if (r.reduction_percent) write_response(ctx, f, r, headache_days, session.procedure);

  begin_observation(ctx, "observation/treatment-plan", "observation/treatment-plan");
  out.key("valueCodeableConcept");
  ctx.write_concept_value("plan/" + std::string(name_of(plan_names, f.plan)));
  ctx.reference_list("focus", session.procedure);
  ctx.notes();
  ctx.end();

  write_side_effects(ctx, f, session);
}

}  // namespace mappings
