// The US Core 6.1.0 profile each resource the mapping writes claims in meta.profile (US Core
// defines none for MedicationStatement, MedicationAdministration, ChargeItem, AdverseEvent,
// DetectedIssue or a non-implantable Device: those claim nothing). Observations from a scored
// instrument (pain rating, MIDAS, HIT-6) are screening assessments; the others simple observations.
#pragma once

#include <string_view>

namespace mappings {

// The canonical URL, or empty when US Core has no profile for the resource.
std::string_view us_core_profile(std::string_view type, std::string_view role);

}  // namespace mappings
