// One record -> one transaction Bundle: shared resources, the record kind's resources, the
// DetectedIssues of its flags, and the Provenance of the write, in that order.
#include "mappings/bundle_mapper.h"

#include "mappings/contract_names.h"
#include "mappings/record_context.h"

namespace mappings {
namespace {

// A body site: the muscle (local code), with laterality as mCODE's qualifier extension.
std::string render_body_site(const code_tables& tables, muscle m, side s) {
  const auto& muscle_concept = tables.concept_for("muscle/" + std::string(name_of(muscle_names, m)));
  const std::string side_key = "laterality/" + std::string(name_of(side_names, s));
  fhir::json_writer out;
  out.begin_object();
  out.key("extension");
  out.begin_array();
  out.begin_object();
  out.member("url", tables.extensions().laterality);
  out.key("valueCodeableConcept");
  out.raw(tables.concept_json(side_key));
  out.end_object();
  out.end_array();
  out.key("coding");
  out.begin_array();
  for (const auto& c : muscle_concept.codings) fhir::write_coding(out, c);
  out.end_array();
  out.member("text", muscle_concept.text + ", " + tables.concept_for(side_key).text);
  out.end_object();
  return std::string(out.view());
}

}  // namespace

bundle_mapper::bundle_mapper(mapping_config config, const code_tables& tables)
    : config_(std::move(config)), tables_(tables) {
  systems_.mrn = config_.mrn_system();
  systems_.resource = config_.resource_system();
  systems_.record = config_.record_system();
  systems_.organization = config_.organization_system();
  systems_.device = config_.device_system();
  systems_.provenance = config_.provenance_system();
  for (const auto& [m, m_name] : muscle_names) {
    for (const auto& [s, s_name] : side_names) {
      fragments_.body_sites[static_cast<std::size_t>(m)][static_cast<std::size_t>(s)] =
          render_body_site(tables_, m, s);
    }
  }
}

mapping_outcome bundle_mapper::map(const clinic_record& record, const patient_history& history,
                                   fhir::json_writer& out) const {
  out.clear();
  mapping_outcome outcome;
  outcome.flags = find_flags(record, history, tables_);

  record_context ctx(record, history, config_, systems_, tables_, fragments_, out);
  ctx.bundle.begin_bundle(systems_.record,
                          record.record_id + "/r" + std::to_string(record.revision));
  write_shared_resources(ctx);
  if (const auto* c = std::get_if<consultation>(&record.body)) {
    write_consultation(ctx, *c);
  } else if (const auto* p = std::get_if<procedure>(&record.body)) {
    write_procedure(ctx, *p);
  } else {
    write_follow_up(ctx, std::get<follow_up>(record.body), outcome);
  }
  write_detected_issues(ctx, outcome.flags);
  write_provenance(ctx);
  ctx.bundle.end_bundle();

  outcome.resource_counts = std::move(ctx.resource_counts);
  outcome.entries = ctx.bundle.entry_count();
  return outcome;
}

}  // namespace mappings
