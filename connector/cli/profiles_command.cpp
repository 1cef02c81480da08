// `profiles`: the StructureDefinitions of the connector's own extensions, under the configured
// identifier base, as one FHIR Bundle (type collection) on stdout: what the EHR team loads into
// its server or validator so that every extension the connector writes resolves.
#include <cstdio>

#include "connector/cli/commands.h"
#include "connector/config/config.h"
#include "mappings/extension_definitions.h"

namespace connector {

int run_profiles(const std::vector<std::string>& args) {
  std::vector<std::string> seen;
  const connector_config config = load_config(config_only(args, {}, seen));
  const std::string bundle = mappings::extension_definitions(
      std::string(MIGRAINE_MAPPINGS_DIR) + "/profiles", config.mapping.identifier_system);
  std::fwrite(bundle.data(), 1, bundle.size(), stdout);
  std::fputc('\n', stdout);
  return exit_ok;
}

}  // namespace connector
