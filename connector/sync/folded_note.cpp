// The note that carries what an EHR will not take.
#include "connector/sync/folded_note.h"

#include <algorithm>

#include "connector/auth/client_assertion.h"
#include "fhir/datatypes.h"
#include "fhir/json_writer.h"

namespace connector {

const left_out_rules& default_left_out_rules() {
  static const left_out_rules rules = {
      {"MedicationAdministration", "fold"}, {"ChargeItem", "fold"}, {"AdverseEvent", "fold"}};
  return rules;
}

std::vector<std::string> folded_types(const fhir::write_plan& plan, const write_strategy& strategy,
                                      const left_out_rules& rules) {
  std::vector<std::string> types;
  for (const auto& w : plan.writes) {
    const auto* route = strategy.route(w.type);
    const auto rule = rules.find(w.type);
    const bool fold = route != nullptr && !route->sent && rule != rules.end() && rule->second == "fold";
    if (fold && std::find(types.begin(), types.end(), w.type) == types.end()) types.push_back(w.type);
  }
  return types;
}

std::string as_xhtml(const std::string& text) {
  std::string out = R"(<div xmlns="http://www.w3.org/1999/xhtml">)";
  std::size_t at = 0;
  while (at < text.size()) {
    const auto end = std::min(text.find('\n', at), text.size());
    out += "<p>";
    for (std::size_t i = at; i < end; ++i) {
      switch (text[i]) {
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '&': out += "&amp;"; break;
        case '"': out += "&quot;"; break;
        default: out += text[i];
      }
    }
    out += "</p>";
    at = end + 1;
  }
  return out + "</div>";
}

bool add_folded_note(fhir::write_plan& plan, const write_strategy& strategy, const left_out_rules& rules,
                     const mappings::bundle_mapper& mapper, const mappings::clinic_record& record, note_format format) {
  const auto* note_route = strategy.route("DocumentReference");
  if (note_route != nullptr && !note_route->sent) return false;
  const auto types = folded_types(plan, strategy, rules);
  if (types.empty()) return false;
  const std::string text = mapper.describe(record, types);
  if (text.empty()) return false;

  auto full_url_of = [&](std::string_view type) -> std::string {
    const auto it = std::find_if(plan.writes.begin(), plan.writes.end(), [&](const auto& w) { return w.type == type; });
    return it == plan.writes.end() ? std::string() : it->full_url;
  };
  fhir::planned_write note;
  note.type = "DocumentReference";
  note.key_system = mapper.systems().resource;
  note.key_value = record.record_id + "/note";
  const bool retracted = record.status == mappings::record_status::entered_in_error;
  note.mode = record.revision > 1 || retracted ? fhir::write_mode::upsert : fhir::write_mode::create_if_absent;
  note.full_url = fhir::urn_uuid_for({"DocumentReference", note.key_system, note.key_value});
  const std::string patient = full_url_of("Patient"), practitioner = full_url_of("Practitioner"),
                    encounter = full_url_of("Encounter");

  fhir::json_writer out;
  out.begin_object();
  out.member("resourceType", "DocumentReference");
  out.key("meta");
  out.begin_object();
  out.key("profile");
  out.begin_array();
  out.string("http://hl7.org/fhir/us/core/StructureDefinition/us-core-documentreference");
  out.end_array();
  out.end_object();
  out.key("identifier");
  out.begin_array();
  out.begin_object();
  out.member("system", note.key_system);
  out.member("value", note.key_value);
  out.end_object();
  out.end_array();
  out.member("status", retracted ? "entered-in-error" : "current");
  out.key("type");
  fhir::write_codeable_concept(out, {{{"http://loinc.org", "11506-3", "Progress note"}}, ""});
  out.key("category");
  out.begin_array();
  fhir::write_codeable_concept(
      out, {{{"http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category", "clinical-note", "Clinical Note"}}, ""});
  out.end_array();
  if (!patient.empty()) {
    out.key("subject");
    out.begin_object();
    out.member("reference", patient);
    out.end_object();
  }
  out.member("date", record.recorded_at.text);
  if (!practitioner.empty()) {
    out.key("author");
    out.begin_array();
    out.begin_object();
    out.member("reference", practitioner);
    out.end_object();
    out.end_array();
  }
  out.member("description", std::string("What this EHR does not take structurally, from clinic record ") + record.type_name());
  out.key("content");
  out.begin_array();
  out.begin_object();
  out.key("attachment");
  out.begin_object();
  const bool xhtml = format == note_format::xhtml;
  out.member("contentType", xhtml ? "application/xhtml+xml" : "text/plain; charset=utf-8");
  out.member("data", base64(xhtml ? as_xhtml(text) : text));
  out.member("title", "Injection details the EHR does not take structurally");
  out.end_object();
  out.end_object();
  out.end_array();
  if (!encounter.empty()) {
    out.key("context");
    out.begin_object();
    out.key("encounter");
    out.begin_array();
    out.begin_object();
    out.member("reference", encounter);
    out.end_object();
    out.end_array();
    out.end_object();
  }
  out.end_object();
  note.resource = std::string(out.view());
  for (const auto& r : {patient, practitioner, encounter}) {
    if (!r.empty()) note.references.push_back(r);
  }
  plan.writes.push_back(std::move(note));
  plan.folded = types;
  return true;
}

}  // namespace connector
