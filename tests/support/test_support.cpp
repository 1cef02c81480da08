// Test helpers (see test_support.h).
#include "support/test_support.h"

#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#ifndef TEST_SOURCE_DIR
#error "TEST_SOURCE_DIR must name the repository root"
#endif

namespace test_support {

std::string source_path(std::string_view relative) {
  return std::string(TEST_SOURCE_DIR) + "/" + std::string(relative);
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

mappings::mapping_config default_config() { return mappings::mapping_config{}; }

const mappings::code_tables& shipped_tables() {
  static const mappings::code_tables tables = mappings::code_tables::load(
      source_path("mappings/code-tables.json"), default_config().local_code_system);
  return tables;
}

mappings::clinic_record valid_record(std::string_view json) {
  auto result = mappings::read_record(json, shipped_tables());
  for (const auto& p : result.problems) ADD_FAILURE() << p.path << ": " << p.message;
  if (!result.record) throw std::runtime_error("record expected to be valid");
  return std::move(*result.record);
}

mappings::clinic_record example(std::string_view kind) {
  return valid_record(read_text(source_path("mappings/examples/" + std::string(kind) + ".json")));
}

mappings::patient_history history_for(std::string_view kind) {
  if (kind != "follow_up") return {};
  return mappings::patient_history({example("consultation"), example("procedure")});
}

std::string to_json(const rapidjson::Value& v) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  v.Accept(writer);
  return {buffer.GetString(), buffer.GetSize()};
}

mapped map_record(const mappings::clinic_record& record, const mappings::patient_history& history) {
  static const mappings::bundle_mapper mapper(default_config(), shipped_tables());
  fhir::json_writer out;
  mapped m;
  m.outcome = mapper.map(record, history, out);
  m.text = std::string(out.view());
  if (m.outcome.result != mappings::mapping_result::mapped) {
    EXPECT_TRUE(m.text.empty()) << "a record that waits or is stale must write nothing";
    static constexpr std::string_view empty = R"({"entry":[]})";
    m.bundle.Parse(empty.data(), empty.size());
    return m;
  }
  m.bundle.Parse(m.text.data(), m.text.size());
  EXPECT_FALSE(m.bundle.HasParseError()) << "the mapper wrote invalid JSON";
  return m;
}

std::vector<const rapidjson::Value*> mapped::resources(std::string_view type) const {
  std::vector<const rapidjson::Value*> found;
  for (const auto& e : bundle["entry"].GetArray()) {
    if (!e.HasMember("resource")) continue;
    const auto& r = e["resource"];
    if (std::string_view(r["resourceType"].GetString()) == type) found.push_back(&r);
  }
  return found;
}

namespace {
std::string_view identifier_value(const rapidjson::Value& resource) {
  if (!resource.HasMember("identifier")) return {};
  const auto& id = resource["identifier"];
  const auto& first = id.IsArray() ? id[0] : id;
  return first["value"].GetString();
}

// "PROC-1/procedure" has role "procedure"; shared resources (Patient "MRN-1") match whole.
bool ends_with_role(std::string_view value, std::string_view role) {
  if (value == role) return true;
  return value.size() > role.size() && value.substr(value.size() - role.size()) == role &&
         value[value.size() - role.size() - 1] == '/';
}
}  // namespace

const rapidjson::Value& mapped::entry_of(std::string_view type, std::string_view role) const {
  const rapidjson::Value* match = nullptr;
  for (const auto& e : bundle["entry"].GetArray()) {
    if (!e.HasMember("resource")) continue;
    const auto& r = e["resource"];
    if (std::string_view(r["resourceType"].GetString()) != type) continue;
    if (!ends_with_role(identifier_value(r), role)) continue;
    EXPECT_EQ(match, nullptr) << "two " << type << " resources for role " << role;
    match = &e;
  }
  if (match == nullptr) {
    ADD_FAILURE() << "no " << type << " with role " << role;
    static const rapidjson::Value none(rapidjson::kObjectType);
    return none;
  }
  return *match;
}

const rapidjson::Value& mapped::resource(std::string_view type, std::string_view role) const {
  const auto& e = entry_of(type, role);
  if (!e.HasMember("resource")) return e;
  return e["resource"];
}

bool mapped::has(std::string_view type, std::string_view role) const {
  for (const auto* r : resources(type)) {
    if (ends_with_role(identifier_value(*r), role)) return true;
  }
  return false;
}

}  // namespace test_support
