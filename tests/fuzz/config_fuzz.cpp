// Fuzz target: configuration loading (connector/config/config.h, connector::load_config), the
// JSONC file read at start-up by the daemon and every command. load_config reads only a path, so
// each input is written to the same file in a private temporary folder (made once per process
// with mkdtemp under $TMPDIR or /tmp, removed at exit) and loaded from there. Relative paths in
// the file resolve against that folder; load_config opens no file but the configuration itself.
//
// A bad file throws connector::config_error (documented): that is the expected answer to most
// inputs and is caught. Anything else thrown, a crash or a sanitizer report is a finding.
// Properties checked for an accepted file: the checks load_config documents hold for the result
// (system URIs start with http(s):// or urn:, clinic_id has none of " |?&#%").
#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "connector/config/config.h"
#include "fuzz_support.h"

namespace {

// A plain array, not a std::string: the atexit handler runs after static objects are destroyed.
char scratch[4096];

void remove_scratch() {
  std::error_code ignored;
  std::filesystem::remove_all(scratch, ignored);
}

const char* scratch_folder() {
  if (scratch[0] == '\0') {
    const char* base = std::getenv("TMPDIR");
    const int n = std::snprintf(scratch, sizeof scratch, "%s/migraine-config-fuzz-XXXXXX",
                                base != nullptr && *base != '\0' ? base : "/tmp");
    if (n <= 0 || static_cast<std::size_t>(n) >= sizeof scratch || ::mkdtemp(scratch) == nullptr) {
      std::perror("config_fuzz: cannot make a temporary folder");
      std::abort();
    }
    std::atexit(remove_scratch);
  }
  return scratch;
}

// A new file each time: rewriting one in place (O_TRUNC) makes ext4 flush it on close, which
// would cost most of the run's time.
void write_file(const std::string& path, const std::uint8_t* data, std::size_t size) {
  std::remove(path.c_str());
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr || (size > 0 && std::fwrite(data, 1, size, f) != size) || std::fclose(f) != 0) {
    std::perror("config_fuzz: cannot write the configuration");
    std::abort();
  }
}

bool system_uri(const std::string& uri) {
  return uri.rfind("http://", 0) == 0 || uri.rfind("https://", 0) == 0 || uri.rfind("urn:", 0) == 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string path = std::string(scratch_folder()) + "/connector.jsonc";
  write_file(path, data, size);
  try {
    const connector::connector_config config = connector::load_config(path);
    FUZZ_CHECK(system_uri(config.mapping.identifier_system), "identifier_system is a URI");
    FUZZ_CHECK(system_uri(config.mapping.local_code_system), "local_code_system is a URI");
    FUZZ_CHECK(config.mapping.clinic_id.find_first_of(" |?&#%") == std::string::npos, "clinic_id");
    if (config.ingest_api.listen) (void)config.ingest_api.listen->loopback();
    (void)connector::auth_kind_name(config.ehr.auth.what);
  } catch (const connector::config_error&) {
    // The documented answer to a bad file.
  }
  return 0;
}
