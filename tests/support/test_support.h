// Helpers shared by the tests: the shipped code tables, reading records, mapping them, and a
// small read-only view of a Bundle to assert on.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <rapidjson/document.h>

#include "mappings/bundle_mapper.h"
#include "mappings/code_tables.h"
#include "mappings/record_reader.h"

namespace test_support {

std::string source_path(std::string_view relative);  // under the repository root
std::string read_text(const std::string& path);
const mappings::code_tables& shipped_tables();
mappings::mapping_config default_config();

// Reads a record that must be valid (fails the test otherwise).
mappings::clinic_record valid_record(std::string_view json);
mappings::clinic_record example(std::string_view kind);  // mappings/examples/<kind>.json

// A record from an example with a JSON edit applied: `edit` receives the parsed document.
template <typename Edit>
std::string edited_example(std::string_view kind, Edit edit);

struct mapped {
  rapidjson::Document bundle;
  mappings::mapping_outcome outcome;
  std::string text;

  // Entries whose resource has this type, in bundle order.
  std::vector<const rapidjson::Value*> resources(std::string_view type) const;
  // The one resource whose identifier value ends with "/<role>" (fails the test otherwise).
  const rapidjson::Value& resource(std::string_view type, std::string_view role) const;
  const rapidjson::Value& entry_of(std::string_view type, std::string_view role) const;
  bool has(std::string_view type, std::string_view role) const;
};

mapped map_record(const mappings::clinic_record& record,
                  const mappings::patient_history& history = {});
// The example's earlier records: a follow-up's procedure (and consultation) must be known.
mappings::patient_history history_for(std::string_view kind);

std::string to_json(const rapidjson::Value& v);

}  // namespace test_support

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

template <typename Edit>
std::string test_support::edited_example(std::string_view kind, Edit edit) {
  rapidjson::Document doc;
  const std::string text = read_text(source_path("mappings/examples/" + std::string(kind) + ".json"));
  doc.Parse(text.data(), text.size());  // with a length: no SSE2 read past the end
  edit(doc, doc.GetAllocator());
  return to_json(doc);
}
