// Resources every record yields: the shared Organization, Device, Practitioner and Patient, the
// Encounter, Observations, DetectedIssues for flags, and the Provenance of the write.
#include <algorithm>
#include <string>

#include "mappings/contract_names.h"
#include "mappings/record_context.h"

namespace mappings {
namespace {

void write_human_name(fhir::json_writer& out, const person_name& name,
                      const std::optional<std::string>& suffix) {
  out.key("name");
  out.begin_array();
  out.begin_object();
  out.member("use", "official");  // as the clinic's record keeps it
  out.member("family", name.family);
  out.key("given");
  out.begin_array();
  for (const auto& g : name.given) out.string(g);
  out.end_array();
  if (suffix) {
    out.key("suffix");
    out.begin_array();
    out.string(*suffix);
    out.end_array();
  }
  out.end_object();
  out.end_array();
}

void write_organization(record_context& ctx) {
  auto& out = ctx.out;
  ctx.organization =
      ctx.begin_shared({"Organization", ctx.systems.organization, ctx.config.clinic_id});
  out.member_bool("active", true);
  out.member("name", ctx.config.clinic_name);
  ctx.end();
}

// The connector itself, named as the assembler in every Provenance and the author of flags.
void write_device(record_context& ctx) {
  auto& out = ctx.out;
  ctx.device = ctx.begin_shared({"Device", ctx.systems.device, "migraine-connector"});
  out.member("status", "active");
  out.key("deviceName");
  out.begin_array();
  out.begin_object();
  out.member("name", "migraine-connector");
  out.member("type", "user-friendly-name");
  out.end_object();
  out.end_array();
  out.key("version");
  out.begin_array();
  out.begin_object();
  out.member("value", ctx.config.connector_version);
  out.end_object();
  out.end_array();
  ctx.reference("owner", ctx.organization);
  ctx.end();
}

void write_practitioner(record_context& ctx) {
  const auto& c = ctx.record.clinician;
  ctx.practitioner = ctx.begin_shared({"Practitioner", ctx.systems.npi, c.npi});
  ctx.out.member_bool("active", true);
  write_human_name(ctx.out, c.name, c.credentials);
  ctx.end();
}

void write_contact_point(fhir::json_writer& out, std::string_view system, const std::string& value,
                         const std::optional<contact_use>& use) {
  out.begin_object();
  out.member("system", system);
  out.member("value", value);
  if (use) out.member("use", name_of(contact_use_names, *use));
  out.end_object();
}

// US Core's race or ethnicity extension: each category as an ombCategory coding (unknown and
// declined are NullFlavor codes the value set holds), and the text the extension requires.
template <typename E, std::size_t N>
void write_omb_extension(record_context& ctx, const std::string& url, std::string_view prefix,
                         const name_table<E, N>& names, const std::vector<E>& values) {
  auto& out = ctx.out;
  out.begin_object();
  out.member("url", url);
  out.key("extension");
  out.begin_array();
  std::string text;
  for (const E v : values) {
    const auto& category = ctx.tables.concept_for(std::string(prefix) + std::string(name_of(names, v)));
    out.begin_object();
    out.member("url", "ombCategory");
    out.key("valueCoding");
    fhir::write_coding(out, category.codings.at(0));
    out.end_object();
    text += (text.empty() ? "" : ", ") + (category.text.empty() ? category.codings.at(0).display : category.text);
  }
  out.begin_object();
  out.member("url", "text");
  out.member("valueString", text);
  out.end_object();
  out.end_array();
  out.end_object();
}

void write_patient(record_context& ctx) {
  auto& out = ctx.out;
  const auto& p = ctx.record.patient;
  // Matched on MRN and never overwritten: demographics belong to the EHR once it has the patient.
  ctx.patient = ctx.begin_shared({"Patient", ctx.systems.mrn, p.mrn});
  if (!p.race.empty() || p.ethnicity) {
    out.key("extension");
    out.begin_array();
    if (!p.race.empty()) write_omb_extension(ctx, ctx.tables.extensions().race, "race/", race_names, p.race);
    if (p.ethnicity) {
      write_omb_extension(ctx, ctx.tables.extensions().ethnicity, "ethnicity/", ethnicity_names,
                          std::vector<ethnicity_category>{*p.ethnicity});
    }
    out.end_array();
  }
  out.member_bool("active", true);
  write_human_name(out, p.name, std::nullopt);
  if (p.phone || p.email) {
    out.key("telecom");
    out.begin_array();
    if (p.phone) write_contact_point(out, "phone", *p.phone, p.phone_use);
    if (p.email) write_contact_point(out, "email", *p.email, p.email_use);
    out.end_array();
  }
  out.member("gender", name_of(sex_names, p.gender));
  out.member("birthDate", p.birth_date);
  if (p.address) {
    const auto& a = *p.address;
    out.key("address");
    out.begin_array();
    out.begin_object();
    if (!a.line.empty()) {
      out.key("line");
      out.begin_array();
      for (const auto& l : a.line) out.string(l);
      out.end_array();
    }
    if (a.city) out.member("city", *a.city);
    if (a.state) out.member("state", *a.state);
    if (a.postal_code) out.member("postalCode", *a.postal_code);
    if (a.country) out.member("country", *a.country);
    out.end_object();
    out.end_array();
  }
  if (p.language) {
    out.key("communication");
    out.begin_array();
    out.begin_object();
    out.key("language");
    out.begin_object();
    out.key("coding");
    out.begin_array();
    fhir::write_coding(out, {"urn:ietf:bcp:47", *p.language, ""});
    out.end_array();
    out.end_object();
    out.end_object();
    out.end_array();
  }
  ctx.reference("managingOrganization", ctx.organization);
  ctx.end();
}

}  // namespace

void write_shared_resources(record_context& ctx) {
  write_organization(ctx);
  write_device(ctx);
  write_practitioner(ctx);
  write_patient(ctx);
}

void write_encounter(record_context& ctx, std::string_view type_key, const std::string& reason) {
  auto& out = ctx.out;
  const auto& visit = ctx.record.visit;
  ctx.encounter = ctx.begin("Encounter", "encounter");
  out.member("status", ctx.status("finished"));
  out.key("class");  // a Coding in R4, not a CodeableConcept
  fhir::write_coding(out, ctx.tables.concept_for("encounter-class/ambulatory").codings.at(0));
  out.key("type");
  out.begin_array();
  ctx.write_concept_value(type_key);
  out.end_array();
  ctx.subject();
  out.key("participant");
  out.begin_array();
  out.begin_object();
  out.key("type");
  out.begin_array();
  ctx.write_concept_value("encounter-participant/primary-performer");
  out.end_array();
  out.key("period");
  fhir::write_period(out, visit.start.text, visit.end ? std::string_view(visit.end->text) : "");
  ctx.reference("individual", ctx.practitioner);
  out.end_object();
  out.end_array();
  out.key("period");
  fhir::write_period(out, visit.start.text, visit.end ? std::string_view(visit.end->text) : "");
  if (!reason.empty()) ctx.reference_list("reasonReference", reason);
  if (visit.location) {
    out.key("location");
    out.begin_array();
    out.begin_object();
    out.key("location");
    out.begin_object();
    out.member("display", *visit.location);
    out.end_object();
    out.end_object();
    out.end_array();
  }
  ctx.reference("serviceProvider", ctx.organization);
  ctx.end();
}

std::string begin_observation(record_context& ctx, std::string_view role, std::string_view code_key) {
  auto& out = ctx.out;
  std::string url = ctx.begin("Observation", role);
  out.member("status", ctx.status("final"));
  out.key("category");
  out.begin_array();
  ctx.write_concept_value("observation-category/survey");
  // US Core's screening-assessment category for the disability instruments.
  if (role == "observation/midas" || role == "observation/hit6") {
    ctx.write_concept_value("observation-category/functional-status");
  }
  out.end_array();
  ctx.write_concept("code", code_key);
  ctx.subject();
  ctx.reference("encounter", ctx.encounter);
  out.member("effectiveDateTime", ctx.record.visit.start.text);
  ctx.reference_list("performer", ctx.practitioner);
  return url;
}

std::string write_integer_observation(record_context& ctx, std::string_view role,
                                      std::string_view code_key, int value) {
  std::string url = begin_observation(ctx, role, code_key);
  ctx.out.member("valueInteger", value);
  ctx.end();
  return url;
}

void write_detected_issues(record_context& ctx, const std::vector<clinical_flag>& flags) {
  auto& out = ctx.out;
  std::string key;
  for (const auto& flag : flags) {
    key = "detected-issue/";
    key += flag.rule;
    ctx.begin("DetectedIssue", key);
    out.member("status", ctx.status("final"));
    ctx.write_concept("code", key);
    out.member("severity", to_string(flag.level));
    ctx.reference("patient", ctx.patient);
    out.member("identifiedDateTime", ctx.record.recorded_at.text);
    ctx.reference("author", ctx.device);
    // Only what this bundle holds.
    std::vector<std::string> implicated;
    for (const auto& r : flag.implicated) {
      std::string url = fhir::urn_uuid_for(ctx.own_key(r.type, r.role));
      if (std::find(ctx.own_resources.begin(), ctx.own_resources.end(), url) !=
          ctx.own_resources.end()) {
        implicated.push_back(std::move(url));
      }
    }
    if (!implicated.empty()) fhir::write_reference_array(out, "implicated", implicated);
    out.member("detail", flag.detail);
    ctx.end();
  }
}

void write_provenance(record_context& ctx) {
  auto& out = ctx.out;
  const auto& rec = ctx.record;
  // A retraction sent at the same revision as the record still gets a Provenance of its own.
  std::string tag = rec.record_id + "/r" + std::to_string(rec.revision);
  if (ctx.retracted) tag += "/entered-in-error";
  // Provenance has no identifier in R4: it is found again by a meta.tag naming record and revision.
  ctx.begin_shared({"Provenance", ctx.systems.provenance, std::move(tag)});
  fhir::write_reference_array(out, "target", ctx.own_resources);
  out.member("occurredDateTime", rec.visit.start.text);
  out.member("recorded", rec.recorded_at.text);
  ctx.write_concept("activity", ctx.retracted ? "provenance-activity/nullify"
                                : rec.revision > 1 ? "provenance-activity/update"
                                                   : "provenance-activity/create");
  // The connector assembled the resources and transmits them, the clinician authored the record;
  // all on behalf of the clinic.
  out.key("agent");
  out.begin_array();
  for (const auto& [type, who] : {std::pair{"provenance-agent/assembler", &ctx.device},
                                  std::pair{"provenance-agent/transmitter", &ctx.device},
                                  std::pair{"provenance-agent/author", &ctx.practitioner}}) {
    out.begin_object();
    ctx.write_concept("type", type);
    ctx.reference("who", *who);
    ctx.reference("onBehalfOf", ctx.organization);
    out.end_object();
  }
  out.end_array();
  out.key("entity");
  out.begin_array();
  out.begin_object();
  out.member("role", "source");
  out.key("what");
  out.begin_object();
  out.key("identifier");
  out.begin_object();
  out.member("system", ctx.systems.record);
  out.member("value", rec.record_id);
  out.end_object();
  out.member("display", std::string("clinic record ") + rec.record_id + " revision " +
                            std::to_string(rec.revision) + " (" + rec.type_name() + ")");
  out.end_object();
  out.end_object();
  out.end_array();
  ctx.end();
}

}  // namespace mappings
