// One record -> one transaction Bundle: shared resources, the record kind's resources, the
// DetectedIssues of its flags, and the Provenance of the write, in that order.
#include "mappings/bundle_mapper.h"

#include <algorithm>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "fhir/json_parse.h"
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

// Shared resources, the record kind's resources, and the DetectedIssues of its flags.
void write_record(record_context& ctx, const std::vector<clinical_flag>& flags) {
  write_shared_resources(ctx);
  if (const auto* c = std::get_if<consultation>(&ctx.record.body)) {
    write_consultation(ctx, *c);
  } else if (const auto* p = std::get_if<procedure>(&ctx.record.body)) {
    write_procedure(ctx, *p);
  } else {
    write_follow_up(ctx, std::get<follow_up>(ctx.record.body));
  }
  write_detected_issues(ctx, flags);
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
  // A relative extension URL in the tables is the connector's own: it lives under the identifier base.
  auto resolve = [&](const std::string& url) {
    return url.rfind("StructureDefinition/", 0) == 0 ? config_.identifier_system + "/" + url : url;
  };
  systems_.drug_class_extension = resolve(tables_.extensions().drug_class);
  systems_.billing_modifier_extension = resolve(tables_.extensions().billing_modifier);
  for (const auto& [m, m_name] : muscle_names) {
    for (const auto& [s, s_name] : side_names) {
      fragments_.body_sites[static_cast<std::size_t>(m)][static_cast<std::size_t>(s)] =
          render_body_site(tables_, m, s);
    }
  }
}

// What an earlier revision created and this one no longer does (a side effect removed, nothing
// discarded any more, a flag that no longer applies) is retracted in the same transaction, so an
// amendment leaves nothing stale behind. The earlier revision is mapped as a retraction into a
// scratch bundle, and its entries this revision did not write are copied over. Called for every
// earlier revision in the history, newest first: a revision that was sent but never answered may
// or may not be at the EHR, so what it made and what the revision before it made are both retracted.
void bundle_mapper::retract_dropped(record_context& ctx, const clinic_record& earlier) const {
  clinic_record retraction = earlier;
  retraction.status = record_status::entered_in_error;
  retraction.revision = ctx.record.revision;  // so its writes are upserts and deletions
  fhir::json_writer scratch;
  record_context old_ctx(retraction, ctx.history, config_, systems_, tables_, fragments_, scratch);
  old_ctx.bundle.begin_bundle(systems_.record, retraction.record_id);
  write_record(old_ctx, find_flags(retraction, ctx.history, tables_));
  old_ctx.bundle.end_bundle();

  rapidjson::Document doc;
  if (!fhir::detail::parse_json(doc, scratch.view()).empty()) return;  // our own output: cannot happen
  rapidjson::StringBuffer buffer;
  for (const auto& entry : doc["entry"].GetArray()) {
    const std::string url = entry["fullUrl"].GetString();
    const bool own = std::find(old_ctx.own_resources.begin(), old_ctx.own_resources.end(), url) !=
                     old_ctx.own_resources.end();
    const bool kept = std::find(ctx.own_resources.begin(), ctx.own_resources.end(), url) !=
                      ctx.own_resources.end();
    if (!own || kept) continue;  // shared resources, or still written by this revision
    buffer.Clear();
    rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
    entry.Accept(writer);
    ctx.bundle.append_entry({buffer.GetString(), buffer.GetSize()});
    ctx.own_resources.push_back(url);
  }
}

mapping_outcome bundle_mapper::map(const clinic_record& record, const patient_history& history,
                                   fhir::json_writer& out) const {
  out.clear();
  mapping_outcome outcome;
  const clinic_record* earlier = history.latest_revision(record.record_id);
  if (earlier != nullptr && earlier->revision >= record.revision) {
    outcome.result = mapping_result::stale;
    outcome.newer_revision_seen = earlier->revision;
    return outcome;
  }
  // A follow-up's bundle refers to its procedure's resources in the EHR: without them the whole
  // transaction would fail, so it waits until the procedure has been seen (and so sent first).
  if (const auto* f = std::get_if<follow_up>(&record.body)) {
    const clinic_record* reviewed = history.find(f->procedure_record_id);
    if (reviewed == nullptr || reviewed->body.index() != procedure_kind) {
      outcome.result = mapping_result::waits;
      outcome.waits_for_record = f->procedure_record_id;
      return outcome;
    }
  }
  outcome.flags = find_flags(record, history, tables_);

  record_context ctx(record, history, config_, systems_, tables_, fragments_, out);
  ctx.bundle.begin_bundle(systems_.record,
                          record.record_id + "/r" + std::to_string(record.revision));
  write_record(ctx, outcome.flags);
  for (const clinic_record* r : history.revisions(record.record_id)) retract_dropped(ctx, *r);
  write_provenance(ctx);
  ctx.bundle.end_bundle();

  outcome.resource_counts = std::move(ctx.resource_counts);
  outcome.entries = ctx.bundle.entry_count();
  return outcome;
}

}  // namespace mappings
