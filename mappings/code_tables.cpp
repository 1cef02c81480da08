// Loading and checking the editable code tables.
#include "mappings/code_tables.h"

#include <fstream>
#include <sstream>
#include <stdexcept>

#include "fhir/json_value.h"
#include "mappings/contract_names.h"

namespace mappings {
namespace {

// Keys the mappers ask for by name (enum-derived keys are added in required_keys()).
constexpr std::string_view fixed_keys[] = {
    "encounter-class/ambulatory", "encounter-type/consultation",
    "encounter-type/procedure", "encounter-type/follow-up", "condition-category/encounter-diagnosis",
    "condition-clinical/active", "condition-verification/confirmed",
    "condition-verification/entered-in-error", "condition/chronic-migraine",
    "observation-category/survey", "observation/headache-days", "observation/migraine-days",
    "observation/months-at-frequency", "observation/headache-hours", "observation/pain-severity",
    "observation/midas", "observation/hit6", "observation/acute-medication-days", "observation/aura",
    "observation/triggers", "observation/trigger", "observation/eligibility",
    "observation/meets-chronic-migraine-criteria", "observation/failed-preventive-classes",
    "observation/headache-day-reduction", "observation/baseline-headache-days",
    "observation/treatment-cycles", "observation/treatment-plan", "procedure/chemodenervation",
    "billing/cpt-64615", "billing/j0585", "billing-modifier/jw", "billing-modifier/jz",
    "laterality/left", "laterality/right", "laterality/both", "laterality/midline",
    "adverse-event/immediate-reaction", "adverse-event-severity/mild",
    "adverse-event-severity/moderate", "adverse-event-severity/severe",
    "adverse-event-outcome/resolved", "adverse-event-outcome/ongoing",
    "detected-issue/product-expired", "detected-issue/session-dose-above-maximum",
    "detected-issue/cumulative-dose-above-maximum", "detected-issue/sessions-too-close",
    "detected-issue/preempt-deviation", "detected-issue/criteria-not-met",
    "detected-issue/preventives-not-met", "detected-issue/insufficient-response",
    "detected-issue/possible-toxin-spread", "provenance-agent/assembler", "provenance-agent/author",
    "provenance-activity/create", "provenance-activity/update", "provenance-activity/nullify",
    "provenance-agent/transmitter", "encounter-participant/primary-performer", "retraction-tag/entered-in-error",
    "observation-category/functional-status"};

template <typename Table>
void add_keys(std::vector<std::string>& keys, std::string_view prefix, const Table& table) {
  for (const auto& [value, name] : table) keys.push_back(std::string(prefix) + std::string(name));
}

std::vector<std::string> required_keys() {
  std::vector<std::string> keys(std::begin(fixed_keys), std::end(fixed_keys));
  add_keys(keys, "decision/", decision_names);
  add_keys(keys, "plan/", plan_names);
  add_keys(keys, "preventive-outcome/", preventive_outcome_names);
  add_keys(keys, "drug-class/", drug_class_names);
  add_keys(keys, "muscle/", muscle_names);
  add_keys(keys, "side-effect/", side_effect_names);
  add_keys(keys, "race/", race_names);
  add_keys(keys, "ethnicity/", ethnicity_names);
  return keys;
}

[[noreturn]] void fail(const std::string& source, const std::string& what) {
  throw std::runtime_error("code tables " + source + ": " + what);
}

std::string required_string(const fhir::json_value& obj, std::string_view key,
                            const std::string& source, const std::string& where) {
  const auto* v = obj.find(key);
  if (v == nullptr || !v->is_string() || v->text.empty()) {
    fail(source, where + "." + std::string(key) + " must be a non-empty string");
  }
  return v->text;
}

fhir::coding read_coding(const fhir::json_value& v, std::string_view local_system,
                         const std::string& source, const std::string& where) {
  if (!v.is_object()) fail(source, where + " must be an object");
  fhir::coding c;
  c.system = required_string(v, "system", source, where);
  if (c.system == "local") c.system = std::string(local_system);
  c.code = required_string(v, "code", source, where);
  if (const auto* d = v.find("display"); d != nullptr && d->is_string()) c.display = d->text;
  return c;
}

const fhir::json_value& section(const fhir::json_value& root, std::string_view name,
                                const std::string& source) {
  const auto* s = root.find(name);
  if (s == nullptr || !s->is_object()) fail(source, "missing object \"" + std::string(name) + "\"");
  return *s;
}

}  // namespace

code_tables code_tables::load(const std::string& path, std::string_view local_code_system) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot be read");
  std::ostringstream text;
  text << in.rdbuf();
  return parse(text.str(), local_code_system, path);
}

code_tables code_tables::parse(std::string_view json, std::string_view local_code_system,
                               const std::string& source) {
  fhir::json_value root;
  if (auto error = fhir::parse_json_value(json, root, true); !error.empty()) fail(source, error);
  if (!root.is_object()) fail(source, "must be a JSON object");

  code_tables tables;
  for (const auto& [key, entry] : section(root, "concepts", source).members) {
    if (key.rfind("$comment", 0) == 0) continue;  // notes for the terminologist
    const std::string where = "concepts." + key;
    if (!entry.is_object()) fail(source, where + " must be an object");
    fhir::codeable_concept c;
    if (const auto* codings = entry.find("codings"); codings != nullptr && codings->is_array()) {
      for (std::size_t i = 0; i < codings->items.size(); ++i) {
        c.codings.push_back(read_coding(codings->items[i], local_code_system, source,
                                        where + ".codings[" + std::to_string(i) + "]"));
      }
    }
    if (const auto* t = entry.find("text"); t != nullptr && t->is_string()) c.text = t->text;
    if (c.codings.empty() && c.text.empty()) fail(source, where + " needs codings or text");
    std::string json = fhir::render_codeable_concept(c);
    tables.concepts_.emplace(key, table_concept{std::move(c), std::move(json)});
  }
  for (const auto& key : required_keys()) {
    if (!tables.concepts_.contains(key)) fail(source, "missing concept \"" + key + "\"");
  }

  for (const auto& [ndc11, entry] : section(root, "products", source).members) {
    if (ndc11 == "$comment") continue;
    const std::string where = "products." + ndc11;
    if (ndc11.size() != 11 || ndc11.find_first_not_of("0123456789") != std::string::npos) {
      fail(source, where + ": the key must be an 11-digit NDC");
    }
    product_entry p;
    p.ndc10 = required_string(entry, "ndc10", source, where);
    p.display = required_string(entry, "display", source, where);
    const auto* units = entry.find("vial_units");
    if (units == nullptr || !units->is_number() || units->number <= 0) {
      fail(source, where + ".vial_units must be a positive number");
    }
    p.vial_units = static_cast<int>(units->number);
    tables.products_.emplace(ndc11, std::move(p));
  }

  for (const auto& [code, entry] : section(root, "diagnoses", source).members) {
    if (code == "$comment") continue;
    const std::string where = "diagnoses." + code;
    diagnosis_entry d;
    d.display = required_string(entry, "display", source, where);
    if (const auto* also = entry.find("also"); also != nullptr && also->is_array()) {
      for (const auto& a : also->items) d.also.push_back(read_coding(a, local_code_system, source, where));
    }
    tables.diagnoses_.emplace(code, std::move(d));
  }

  const auto& counted = section(root, "counted_preventive_classes", source);
  const auto* classes = counted.find("classes");
  if (classes == nullptr || !classes->is_array()) {
    fail(source, "counted_preventive_classes.classes must be an array");
  }
  for (const auto& c : classes->items) {
    auto parsed = c.is_string() ? parse_name(drug_class_names, c.text) : std::nullopt;
    if (!parsed) fail(source, "counted_preventive_classes.classes has an unknown drug class");
    tables.counted_classes_.push_back(*parsed);
  }

  const auto& ext = section(root, "extensions", source);
  tables.extensions_.laterality = required_string(ext, "laterality", source, "extensions");
  tables.extensions_.asserted_date = required_string(ext, "asserted-date", source, "extensions");
  tables.extensions_.race = required_string(ext, "race", source, "extensions");
  tables.extensions_.ethnicity = required_string(ext, "ethnicity", source, "extensions");
  tables.extensions_.drug_class = required_string(ext, "drug-class", source, "extensions");
  tables.extensions_.billing_modifier = required_string(ext, "billing-modifier", source, "extensions");
  return tables;
}

const code_tables::table_concept& code_tables::find_concept(std::string_view key) const {
  auto it = concepts_.find(key);
  if (it == concepts_.end()) {
    // Only reachable through a programming error: required keys are checked at load time.
    throw std::logic_error("code table key not checked at load time: " + std::string(key));
  }
  return it->second;
}

const fhir::codeable_concept& code_tables::concept_for(std::string_view key) const {
  return find_concept(key).value;
}

std::string_view code_tables::concept_json(std::string_view key) const { return find_concept(key).json; }

const product_entry* code_tables::product(std::string_view ndc11) const {
  auto it = products_.find(ndc11);
  return it == products_.end() ? nullptr : &it->second;
}

const diagnosis_entry* code_tables::diagnosis(std::string_view icd10) const {
  auto it = diagnoses_.find(icd10);
  return it == diagnoses_.end() ? nullptr : &it->second;
}

bool code_tables::counts_as_preventive_class(drug_class c) const {
  for (auto counted : counted_classes_) {
    if (counted == c) return true;
  }
  return false;
}

}  // namespace mappings
