// Shared by the fuzz targets: the code tables loaded once, as the `map` command and the daemon
// load them, and a check that aborts (a libFuzzer crash, a failed replay) when a documented
// property of an API does not hold.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "connector/config/config.h"
#include "fhir/json_value.h"
#include "mappings/code_tables.h"

namespace fuzz {

inline std::string_view text_of(const std::uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

[[noreturn]] inline void fail(const char* what, std::string_view detail = {}) {
  std::fprintf(stderr, "fuzz: property violated: %s%s%.*s\n", what, detail.empty() ? "" : ": ",
               static_cast<int>(detail.size()), detail.data());
  std::abort();
}

#define FUZZ_CHECK(condition, ...) \
  do {                             \
    if (!(condition)) ::fuzz::fail("(" #condition ") " __VA_ARGS__); \
  } while (0)

// The configuration without a file (every default), as `map` without --config has it.
inline const connector::connector_config& default_config() {
  static const connector::connector_config config = connector::load_config(std::nullopt);
  return config;
}

// mappings/code-tables.json of the source tree (MIGRAINE_MAPPINGS_DIR), loaded once per process:
// loading is the start-up step, not what is fuzzed. A failure here is a broken checkout: abort.
inline const mappings::code_tables& shipped_code_tables() {
  static const mappings::code_tables tables = [] {
    const auto& config = default_config();
    try {
      return mappings::code_tables::load(config.code_tables_path, config.mapping.local_code_system);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "fuzz: cannot load the code tables: %s\n", e.what());
      std::abort();
    }
  }();
  return tables;
}

// Empty when `text` is one well-formed JSON document in UTF-8 (what every writer of the project
// must produce), else the parser's message.
inline std::string json_problem(std::string_view text) {
  fhir::json_value parsed;
  return fhir::parse_json_value(text, parsed, false);
}

}  // namespace fuzz
