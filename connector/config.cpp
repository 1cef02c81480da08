// Configuration loading and checking.
#include "connector/config.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "fhir/json_value.h"

#ifndef MIGRAINE_MAPPINGS_DIR
#error "MIGRAINE_MAPPINGS_DIR must name the folder of the shipped code tables"
#endif

namespace connector {
namespace {

namespace fs = std::filesystem;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw config_error("configuration " + path + ": cannot be read");
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Reads one string setting, refusing anything but a non-empty string.
void read_string(const fhir::json_value& section, std::string_view section_name,
                 std::string_view key, std::string& target) {
  const auto* v = section.find(key);
  if (v == nullptr) return;
  if (!v->is_string() || v->text.empty()) {
    throw config_error("setting " + std::string(section_name) + "." + std::string(key) +
                       " must be a non-empty string");
  }
  target = v->text;
}

void read_int(const fhir::json_value& section, std::string_view section_name, std::string_view key,
              int min, int max, int& target) {
  const auto* v = section.find(key);
  if (v == nullptr) return;
  if (!v->is_number() || !v->is_integer || v->number < min || v->number > max) {
    throw config_error("setting " + std::string(section_name) + "." + std::string(key) +
                       " must be a whole number from " + std::to_string(min) + " to " + std::to_string(max));
  }
  target = static_cast<int>(v->number);
}

void refuse_unknown(const fhir::json_value& obj, std::string_view where,
                    std::initializer_list<std::string_view> known) {
  for (const auto& [name, value] : obj.members) {
    if (std::find(known.begin(), known.end(), name) == known.end()) {
      throw config_error("unknown setting " + std::string(where) + (where.empty() ? "" : ".") + name);
    }
  }
}

// Identifier and code systems go into every resource and every conditional URL: a plain URI only.
void check_system_uri(std::string_view setting, const std::string& uri) {
  const bool has_scheme = uri.rfind("http://", 0) == 0 || uri.rfind("https://", 0) == 0 ||
                          uri.rfind("urn:", 0) == 0;
  if (!has_scheme || uri.find_first_of(" |?&#%\"\\") != std::string::npos) {
    throw config_error("setting " + std::string(setting) +
                       " must be an http(s) or urn URI without spaces, |, ?, &, # or %");
  }
}

}  // namespace

connector_config load_config(const std::optional<std::string>& path) {
  connector_config config;
  config.code_tables_path = std::string(MIGRAINE_MAPPINGS_DIR) + "/code-tables.json";
  config.store.patient_key_file = config.store.path + ".key";
  if (!path) return config;

  fhir::json_value root;
  if (auto error = fhir::parse_json_value(read_file(*path), root, true); !error.empty()) {
    throw config_error("configuration " + *path + ": " + error);
  }
  if (!root.is_object()) throw config_error("configuration " + *path + ": must be a JSON object");
  refuse_unknown(root, "", {"mapping", "store", "ehr", "sync"});

  const fs::path folder = fs::path(*path).parent_path();
  if (const auto* m = root.find("mapping")) {
    if (!m->is_object()) throw config_error("setting mapping must be an object");
    refuse_unknown(*m, "mapping",
                   {"identifier_system", "local_code_system", "clinic_id", "clinic_name",
                    "code_tables"});
    auto& mc = config.mapping;
    const bool own_local_system = m->find("local_code_system") != nullptr;
    read_string(*m, "mapping", "identifier_system", mc.identifier_system);
    read_string(*m, "mapping", "local_code_system", mc.local_code_system);
    if (!own_local_system) mc.local_code_system = mc.identifier_system + "/CodeSystem/migraine-local";
    read_string(*m, "mapping", "clinic_id", mc.clinic_id);
    read_string(*m, "mapping", "clinic_name", mc.clinic_name);
    std::string tables;
    read_string(*m, "mapping", "code_tables", tables);
    if (!tables.empty()) config.code_tables_path = (folder / tables).lexically_normal().string();
  }
  if (const auto* st = root.find("store")) {
    if (!st->is_object()) throw config_error("setting store must be an object");
    refuse_unknown(*st, "store", {"path", "patient_key_file", "synchronous"});
    auto& sc = config.store;
    std::string store_path, key_file, synchronous;
    read_string(*st, "store", "path", store_path);
    read_string(*st, "store", "patient_key_file", key_file);
    read_string(*st, "store", "synchronous", synchronous);
    if (!store_path.empty()) sc.path = (folder / store_path).lexically_normal().string();
    sc.patient_key_file = key_file.empty() ? sc.path + ".key"
                                           : (folder / key_file).lexically_normal().string();
    if (!synchronous.empty() && synchronous != "full" && synchronous != "normal") {
      throw config_error("setting store.synchronous must be \"full\" or \"normal\"");
    }
    sc.full_sync = synchronous != "normal";
  } else {
    config.store.path = (folder / config.store.path).lexically_normal().string();
    config.store.patient_key_file = config.store.path + ".key";
  }
  auto relative = [&](const std::string& p) { return (folder / p).lexically_normal().string(); };
  if (const auto* e = root.find("ehr")) {
    if (!e->is_object()) throw config_error("setting ehr must be an object");
    refuse_unknown(*e, "ehr", {"base_url", "ca_file", "client_cert_file", "client_key_file",
                               "connections", "timeout_seconds"});
    auto& ec = config.ehr;
    read_string(*e, "ehr", "base_url", ec.base_url);
    for (auto [key, target] : {std::pair{"ca_file", &ec.ca_file}, std::pair{"client_cert_file", &ec.client_cert_file},
                               std::pair{"client_key_file", &ec.client_key_file}}) {
      std::string value;
      read_string(*e, "ehr", key, value);
      if (!value.empty()) *target = relative(value);
    }
    read_int(*e, "ehr", "connections", 1, 64, ec.connections);
    read_int(*e, "ehr", "timeout_seconds", 1, 600, ec.timeout_seconds);
  }
  if (const auto* y = root.find("sync")) {
    if (!y->is_object()) throw config_error("setting sync must be an object");
    refuse_unknown(*y, "sync", {"max_attempts", "base_delay_ms", "max_delay_ms"});
    read_int(*y, "sync", "max_attempts", 1, 1000, config.sync.max_attempts);
    read_int(*y, "sync", "base_delay_ms", 1, 3600000, config.sync.base_delay_ms);
    read_int(*y, "sync", "max_delay_ms", 1, 86400000, config.sync.max_delay_ms);
  }
  check_system_uri("mapping.identifier_system", config.mapping.identifier_system);
  check_system_uri("mapping.local_code_system", config.mapping.local_code_system);
  if (config.mapping.clinic_id.find_first_of(" |?&#%") != std::string::npos) {
    throw config_error("setting mapping.clinic_id must not contain spaces, |, ?, &, # or %");
  }
  return config;
}

}  // namespace connector
