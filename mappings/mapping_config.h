// The mapping's settings: how the clinic names its identifiers and local codes. Every setting has
// a default, so the offline `map` works without a configuration file.
#pragma once

#include <string>

namespace mappings {

struct mapping_config {
  // Base URI of the clinic's identifier systems; the systems below are derived from it.
  std::string identifier_system = "https://clinic.example/fhir";
  // The clinic's own code system, for concepts with no standard code ("local" in the tables).
  std::string local_code_system = "https://clinic.example/fhir/CodeSystem/migraine-local";
  std::string clinic_id = "migraine-clinic";
  std::string clinic_name = "Migraine clinic";
  std::string connector_version = "0.1.0";

  std::string mrn_system() const { return identifier_system + "/mrn"; }
  std::string resource_system() const { return identifier_system + "/resource"; }
  std::string record_system() const { return identifier_system + "/record"; }
  std::string organization_system() const { return identifier_system + "/organization"; }
  std::string device_system() const { return identifier_system + "/device"; }
  std::string provenance_system() const { return identifier_system + "/provenance"; }
};

}  // namespace mappings
