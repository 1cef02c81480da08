// The StructureDefinitions of the connector's own extensions, for the EHR and strict validators.
// They ship in mappings/profiles/ with the canonical of the default identifier base; the connector
// writes its extensions under the configured mapping.identifier_system, so the definitions are
// re-based to it here.
#pragma once

#include <string>

namespace mappings {

// The canonical base the shipped files use.
inline constexpr std::string_view shipped_canonical_base = "https://clinic.example/fhir";

// A FHIR Bundle (type collection) of every StructureDefinition in `profiles_dir`, each with its url
// and fixed Extension.url moved from the shipped base to `identifier_system`. Throws
// std::runtime_error naming the file when one is unreadable or is no StructureDefinition.
std::string extension_definitions(const std::string& profiles_dir, const std::string& identifier_system);

}  // namespace mappings
