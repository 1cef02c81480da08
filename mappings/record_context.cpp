// Keys, write modes and shorthands shared by every resource writer.
#include "mappings/record_context.h"

#include "mappings/us_core.h"

namespace mappings {

record_context::record_context(const clinic_record& rec, const patient_history& hist,
                               const mapping_config& cfg, const identifier_systems& sys,
                               const code_tables& tbl, const rendered_fragments& frags,
                               fhir::json_writer& writer)
    : record(rec),
      history(hist),
      config(cfg),
      systems(sys),
      tables(tbl),
      fragments(frags),
      out(writer),
      bundle(writer),
      retracted(rec.status == record_status::entered_in_error) {}

fhir::resource_key record_context::own_key(std::string_view type, std::string_view role) const {
  return key_of(record.record_id, type, role);
}

fhir::resource_key record_context::key_of(std::string_view record_id, std::string_view type,
                                          std::string_view role) const {
  std::string value;
  value.reserve(record_id.size() + 1 + role.size());
  value += record_id;
  value += '/';
  value += role;
  return {type, systems.resource, std::move(value)};
}

std::string record_context::begin(std::string_view type, std::string_view role) {
  // An amendment or retraction replaces what the earlier revision created.
  const fhir::write_mode mode = record.revision > 1 || record.status != record_status::final
                                    ? fhir::write_mode::upsert
                                    : fhir::write_mode::create_if_absent;
  // R4 AdverseEvent has no status to say entered-in-error, and deleting it would fail on servers
  // that keep references intact (the earlier Provenance points at it): it carries a tag instead.
  const fhir::coding* retraction_tag =
      retracted && type == "AdverseEvent"
          ? &tables.concept_for("retraction-tag/entered-in-error").codings.at(0)
          : nullptr;
  std::string url = bundle.begin_entry(own_key(type, role), mode, retraction_tag, us_core_profile(type, role));
  count(type);
  own_resources.push_back(url);
  return url;
}

std::string record_context::begin_shared(const fhir::resource_key& key) {
  count(key.type);
  return bundle.begin_entry(key, fhir::write_mode::create_if_absent, nullptr, us_core_profile(key.type, ""));
}

std::string_view record_context::status(std::string_view normal) const {
  return retracted ? std::string_view("entered-in-error") : normal;
}

void record_context::write_concept(std::string_view member, std::string_view table_key) {
  out.key(member);
  write_concept_value(table_key);
}

void record_context::reference(std::string_view member, std::string_view ref) {
  out.key(member);
  fhir::write_reference(out, ref);
}

void record_context::reference_list(std::string_view member, std::string_view ref) {
  out.key(member);
  out.begin_array();
  fhir::write_reference(out, ref);
  out.end_array();
}


void record_context::performer_actor() {
  out.key("performer");
  out.begin_array();
  out.begin_object();
  reference("actor", practitioner);
  out.end_object();
  out.end_array();
}

void record_context::notes() {
  if (!record.notes) return;
  out.key("note");
  out.begin_array();
  out.begin_object();
  out.member("text", *record.notes);
  out.end_object();
  out.end_array();
}

void record_context::count(std::string_view type) {
  for (auto& [t, n] : resource_counts) {
    if (t == type) {
      ++n;
      return;
    }
  }
  resource_counts.emplace_back(type, 1);
}

}  // namespace mappings
