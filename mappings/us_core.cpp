// Which US Core 6.1.0 profile a resource claims.
#include "mappings/us_core.h"

namespace mappings {

std::string_view us_core_profile(std::string_view type, std::string_view role) {
  if (type == "Patient") return "http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient";
  if (type == "Practitioner") return "http://hl7.org/fhir/us/core/StructureDefinition/us-core-practitioner";
  if (type == "Organization") return "http://hl7.org/fhir/us/core/StructureDefinition/us-core-organization";
  if (type == "Encounter") return "http://hl7.org/fhir/us/core/StructureDefinition/us-core-encounter";
  if (type == "Condition") return "http://hl7.org/fhir/us/core/StructureDefinition/us-core-condition-encounter-diagnosis";
  if (type == "Procedure") return "http://hl7.org/fhir/us/core/StructureDefinition/us-core-procedure";
  if (type == "ServiceRequest") return "http://hl7.org/fhir/us/core/StructureDefinition/us-core-servicerequest";
  if (type == "Medication") return "http://hl7.org/fhir/us/core/StructureDefinition/us-core-medication";
  if (type == "Provenance") return "http://hl7.org/fhir/us/core/StructureDefinition/us-core-provenance";
  if (type == "Observation") {
    const bool instrument = role == "observation/pain-severity" || role == "observation/midas" ||
                            role == "observation/hit6";
    return instrument ? "http://hl7.org/fhir/us/core/StructureDefinition/us-core-observation-screening-assessment"
                      : "http://hl7.org/fhir/us/core/StructureDefinition/us-core-simple-observation";
  }
  return {};
}

}  // namespace mappings
