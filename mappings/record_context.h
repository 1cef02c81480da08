// Internal to the mapping: what every resource writer of one record needs, and the few rules that
// hold for all of them (keys, write modes, status under retraction, references to shared resources).
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fhir/datatypes.h"
#include "fhir/transaction_writer.h"
#include "mappings/bundle_mapper.h"

namespace mappings {

class record_context {
 public:
  record_context(const clinic_record& record, const patient_history& history,
                 const mapping_config& config, const identifier_systems& systems,
                 const code_tables& tables, const rendered_fragments& fragments,
                 fhir::json_writer& out);

  const clinic_record& record;
  const patient_history& history;
  const mapping_config& config;
  const identifier_systems& systems;
  const code_tables& tables;
  const rendered_fragments& fragments;
  fhir::json_writer& out;
  fhir::transaction_writer bundle;
  // entered-in-error: every resource the record produced is written with that status.
  const bool retracted;

  // This record's resource for `role`: identifier value "<record_id>/<role>".
  fhir::resource_key own_key(std::string_view type, std::string_view role) const;
  // Another record's resource, for conditional references ("Procedure?identifier=...").
  fhir::resource_key key_of(std::string_view record_id, std::string_view type,
                            std::string_view role) const;

  // Opens this record's resource entry (create-if-absent for a first revision, upsert for an
  // amendment or retraction; a retracted AdverseEvent, which has no status, is tagged).
  // Returns the fullUrl.
  std::string begin(std::string_view type, std::string_view role);
  // Opens a resource shared with other records (Patient, Practitioner...): always create-if-absent.
  std::string begin_shared(const fhir::resource_key& key);
  void end() { bundle.end_entry(); }

  // The status to write: `normal`, or entered-in-error under retraction.
  std::string_view status(std::string_view normal) const;

  // Shorthands over out. Concepts come pre-rendered from the code tables.
  void write_concept(std::string_view member, std::string_view table_key);
  void write_concept_value(std::string_view table_key) { out.raw(tables.concept_json(table_key)); }
  void reference(std::string_view member, std::string_view reference);
  // member: [ {"reference": ref} ]
  void reference_list(std::string_view member, std::string_view reference);
  void subject() { reference("subject", patient); }
  // "performer": [ {"actor": the clinician} ] (Procedure, MedicationAdministration, ChargeItem).
  void performer_actor();
  // "note": [ {"text": the record's notes} ] when it has notes. Notes are PHI: FHIR only, never logs.
  void notes();

  // fullUrls of the shared resources and the encounter, set while writing them.
  std::string patient, practitioner, organization, device, encounter;

  std::vector<std::pair<std::string_view, int>> resource_counts;
  // fullUrls of this record's own resources written so far (not the shared ones): what the
  // Provenance is about, and what a DetectedIssue may implicate.
  std::vector<std::string> own_resources;

 private:
  void count(std::string_view type);

};

// Resource writers shared by all record kinds (common_resources.cpp).
void write_shared_resources(record_context& ctx);
// `reason`: a reference to the Condition or Procedure the visit was for, or empty.
void write_encounter(record_context& ctx, std::string_view type_key, const std::string& reason);
// Opens an Observation with status, category, code, subject, encounter, effective time and
// performer written; the caller adds value[x] and the rest, then calls ctx.end().
std::string begin_observation(record_context& ctx, std::string_view role, std::string_view code_key);
// One Observation with a whole-number value (days per month, scores).
std::string write_integer_observation(record_context& ctx, std::string_view role,
                                      std::string_view code_key, int value);
void write_detected_issues(record_context& ctx, const std::vector<clinical_flag>& flags);
void write_provenance(record_context& ctx);

// Record kinds (one file each).
void write_consultation(record_context& ctx, const consultation& c);
void write_procedure(record_context& ctx, const procedure& p);
void write_follow_up(record_context& ctx, const follow_up& f);

}  // namespace mappings
