// Folding what an EHR will not take into a note: where a type the record yields is not sent
// (MedicationAdministration, ChargeItem, AdverseEvent at Epic, say) and ehr.left_out says "fold"
// for it, the plan gains a DocumentReference whose attachment (text/plain) gives what those
// resources would have said (mappings::bundle_mapper::describe), attached to the patient, the
// clinician and, where the EHR has it, the encounter. Keyed like the record's own resources
// ("<record_id>/note"), so a resend finds it and an amendment or a retraction updates it.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "connector/sync/ehr_capabilities.h"
#include "fhir/write_plan.h"
#include "mappings/bundle_mapper.h"

namespace connector {

// ehr.left_out: per resource type, "fold" or "skip" when the EHR does not take it.
using left_out_rules = std::map<std::string, std::string, std::less<>>;
// The defaults: the injection's doses, charges and reactions are folded; the rest is skipped.
const left_out_rules& default_left_out_rules();

// The types of `plan` the strategy leaves out and `rules` fold, in plan order, once each.
std::vector<std::string> folded_types(const fhir::write_plan& plan, const write_strategy& strategy,
                                      const left_out_rules& rules);

// ehr.note_format: the note's attachment as text/plain (default) or as XHTML, for EHRs that
// display only markup.
enum class note_format { text, xhtml };

// Adds the note to `plan` (and records the folded types in plan.folded) when there is something to
// say and the EHR takes DocumentReference. Returns whether it did.
bool add_folded_note(fhir::write_plan& plan, const write_strategy& strategy, const left_out_rules& rules,
                     const mappings::bundle_mapper& mapper, const mappings::clinic_record& record,
                     note_format format = note_format::text);

// The note's text as an XHTML fragment: a div, a paragraph per line, markup characters escaped.
std::string as_xhtml(const std::string& text);

}  // namespace connector
