// What the resources an EHR will not take would have said, as text for a clinician reading the
// note the connector writes instead (connector/sync/folded_note.cpp). Plain words and the same
// codes the structured resources carry; no layout beyond lines.
#include <set>

#include "mappings/bundle_mapper.h"
#include "mappings/contract_names.h"
#include "mappings/preempt.h"

namespace mappings {
namespace {

std::string concept_text(const code_tables& tables, const std::string& key) {
  const auto& c = tables.concept_for(key);
  if (!c.text.empty()) return c.text;
  return c.codings.empty() ? key : c.codings.front().display;
}

void describe_procedure(const procedure& p, const code_tables& tables, const std::set<std::string>& types, std::string& out) {
  if (types.count("MedicationAdministration")) {
    out += "Drug administered: onabotulinumtoxinA, NDC " + p.product.ndc + ", lot " + p.product.lot + ", expires " +
           p.product.expiration.iso() + "; " + std::to_string(p.product.vials) + " vial(s) of " +
           std::to_string(p.product.vial_units) + " U";
    if (p.product.diluent_ml) out += ", diluted in " + format_units(*p.product.diluent_ml) + " mL";
    out += ".\nUnits per muscle and side:\n";
    for (const auto& d : p.doses_by_site()) {
      out += "  " + concept_text(tables, "muscle/" + std::string(name_of(muscle_names, d.site_muscle))) + ", " +
             concept_text(tables, "laterality/" + std::string(name_of(side_names, d.site_side))) + ": " +
             format_units(d.units) + " U in " + std::to_string(d.sites + d.follow_the_pain_sites) + " site(s)\n";
    }
    out += "Total administered: " + format_units(p.administered_units()) + " U in " +
           std::to_string(p.administered_sites()) + " sites; discarded: " + format_units(p.units_discarded) + " U.\n";
  }
  if (types.count("ChargeItem")) {
    const bool wasted = p.units_discarded > 0;
    out += "Charges: CPT 64615 (chemodenervation for chronic migraine) x1; HCPCS J0585 x" +
           format_units(p.administered_units()) + " U administered" + (wasted ? "" : " (modifier JZ: none discarded)");
    if (wasted) out += "; HCPCS J0585 x" + format_units(p.units_discarded) + " U discarded (modifier JW)";
    out += ".\n";
  }
  if (types.count("AdverseEvent")) {
    if (p.immediate_reactions.empty()) {
      out += "Immediate reactions: none recorded.\n";
    } else {
      out += "Immediate reactions:\n";
      for (const auto& r : p.immediate_reactions) {
        out += "  " + r.reaction + " (" + std::string(name_of(severity_names, r.level)) + ")\n";
      }
    }
  }
}

void describe_follow_up(const follow_up& f, const code_tables& tables, const std::set<std::string>& types, std::string& out) {
  if (!types.count("AdverseEvent")) return;
  if (f.side_effects.empty()) {
    out += "Side effects: none reported.\n";
    return;
  }
  out += "Side effects:\n";
  for (const auto& s : f.side_effects) {
    out += "  " + concept_text(tables, "side-effect/" + std::string(name_of(side_effect_names, s.effect))) + " (" +
           std::string(name_of(severity_names, s.level)) + ")";
    if (s.onset) out += ", onset " + s.onset->iso();
    if (s.resolved) out += *s.resolved ? ", resolved" : ", not resolved";
    out += "\n";
  }
}

}  // namespace

std::string bundle_mapper::describe(const clinic_record& record, const std::vector<std::string>& types) const {
  const std::set<std::string> folded(types.begin(), types.end());
  std::string body;
  if (const auto* p = std::get_if<procedure>(&record.body)) describe_procedure(*p, tables_, folded, body);
  if (const auto* f = std::get_if<follow_up>(&record.body)) describe_follow_up(*f, tables_, folded, body);
  if (body.empty()) return {};
  std::string what;
  for (const auto& t : types) what += (what.empty() ? "" : ", ") + t;
  std::string head = std::string(record.status == record_status::entered_in_error ? "ENTERED IN ERROR. " : "") +
                     "Clinic record " + record.record_id + " (" + record.type_name() + ", revision " +
                     std::to_string(record.revision) + "), recorded " + record.recorded_at.text +
                     ". Written as a note because this EHR does not take " + what + " from the connector.\n\n";
  return head + body;
}

}  // namespace mappings
