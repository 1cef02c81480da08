// The editable code tables (mappings/code-tables.json): every code the mapping writes comes from
// here, so a terminologist can correct one without a rebuild. Loaded once at start-up.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "fhir/datatypes.h"
#include "mappings/clinic_record.h"

namespace mappings {

struct product_entry {
  std::string ndc10;  // the form FHIR carries
  int vial_units = 0;
  std::string display;
};

struct diagnosis_entry {
  std::string display;
  std::vector<fhir::coding> also;  // further codings of the same diagnosis
};

// Extension URLs as the tables give them. A relative one ("StructureDefinition/x") is the
// connector's own and lives under mapping.identifier_system: the mapper resolves it.
struct extension_urls {
  std::string laterality;
  std::string asserted_date;
  std::string race;
  std::string ethnicity;
  std::string drug_class;
  std::string billing_modifier;
};

class code_tables {
 public:
  // Reads the tables; "local" systems become local_code_system. Throws std::runtime_error with a
  // message naming the file and the entry when the file is unreadable or an entry is missing.
  static code_tables load(const std::string& path, std::string_view local_code_system);
  static code_tables parse(std::string_view json, std::string_view local_code_system,
                           const std::string& source_name);

  // Every key the code asks for is checked at load time, so lookups cannot fail afterwards.
  const fhir::codeable_concept& concept_for(std::string_view key) const;
  // The same concept as compact CodeableConcept JSON, rendered once at load for json_writer::raw.
  std::string_view concept_json(std::string_view key) const;
  const product_entry* product(std::string_view ndc11) const;
  const diagnosis_entry* diagnosis(std::string_view icd10) const;
  bool counts_as_preventive_class(drug_class c) const;
  const extension_urls& extensions() const { return extensions_; }

 private:
  struct string_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  struct table_concept {
    fhir::codeable_concept value;
    std::string json;
  };
  const table_concept& find_concept(std::string_view key) const;

  std::unordered_map<std::string, table_concept, string_hash, std::equal_to<>> concepts_;
  std::unordered_map<std::string, product_entry, string_hash, std::equal_to<>> products_;
  std::unordered_map<std::string, diagnosis_entry, string_hash, std::equal_to<>> diagnoses_;
  std::vector<drug_class> counted_classes_;
  extension_urls extensions_;
};

}  // namespace mappings
