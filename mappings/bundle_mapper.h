// Maps one clinic record to one FHIR R4 transaction Bundle (the domain reference's "FHIR R4
// resources each record should yield"), together with the clinical flags it raised.
// Pure: the output depends only on the record, the patient's history and the configuration.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fhir/json_writer.h"
#include "mappings/clinic_record.h"
#include "mappings/clinical_checks.h"
#include "mappings/code_tables.h"
#include "mappings/mapping_config.h"
#include "mappings/patient_history.h"

namespace mappings {

// What became of a record. Only `mapped` writes a Bundle.
enum class mapping_result {
  mapped,
  waits,  // hold: a follow-up whose procedure is not in the history yet must wait for it
  stale,  // a revision not newer than one already seen: a no-op, as the contract says
};

struct mapping_outcome {
  mapping_result result = mapping_result::mapped;
  std::optional<std::string> waits_for_record;  // with waits: the procedure's record_id
  int newer_revision_seen = 0;                   // with stale: the revision already seen
  std::vector<clinical_flag> flags;  // each also written as a DetectedIssue in the bundle
  // Resources in the bundle by type, in first-written order (for summaries).
  std::vector<std::pair<std::string_view, int>> resource_counts;
  std::size_t entries = 0;
};

// The identifier systems derived from the configuration, built once.
struct identifier_systems {
  std::string mrn, resource, record, organization, device, provenance;
  std::string npi = "http://hl7.org/fhir/sid/us-npi";
  // The connector's own extensions, under the identifier base (mappings/profiles/ has their
  // StructureDefinitions for the default base; `migraine-connector profiles` prints them for any).
  std::string drug_class_extension, billing_modifier_extension;
};

// JSON written identically in many resources, rendered once per mapper.
struct rendered_fragments {
  // bodySite / dosage.site CodeableConcept per muscle and side: muscle code plus laterality extension.
  std::array<std::array<std::string, 3>, muscle_count> body_sites;
};

class record_context;

class bundle_mapper {
 public:
  bundle_mapper(mapping_config config, const code_tables& tables);

  // Writes the transaction Bundle for `record` into `out` (cleared first), or, when the record
  // must wait or is stale, nothing.
  mapping_outcome map(const clinic_record& record, const patient_history& history,
                      fhir::json_writer& out) const;

  // What the resources of `types` ("MedicationAdministration", "ChargeItem", "AdverseEvent") would
  // say about `record`, as plain text for a clinician: per muscle and side the units, the lot and
  // expiry, the charges, the reactions. Empty when they say nothing of this record. For an EHR that
  // will not take those types, the connector writes this as a note instead (folded_note.cpp).
  std::string describe(const clinic_record& record, const std::vector<std::string>& types) const;

  const identifier_systems& systems() const { return systems_; }

 private:
  void retract_dropped(record_context& ctx, const clinic_record& earlier) const;

  mapping_config config_;
  identifier_systems systems_;
  const code_tables& tables_;
  rendered_fragments fragments_;
};

}  // namespace mappings
