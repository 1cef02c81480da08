// `ingest`: records stored durably in the outbox from the command line, with their events in the
// sync log.
#include <cstdio>

#include "connector/cli/commands.h"
#include "connector/config/config.h"
#include "connector/config/patient_key.h"
#include "connector/daemon/delivery_setup.h"
#include "connector/intake/intake.h"
#include "connector/intake/record_files.h"
#include "connector/observe/sync_log.h"
#include "connector/outbox/open_outbox.h"
#include "mappings/mapping_set.h"

namespace connector {

int run_ingest(const std::vector<std::string>& args) {
  const auto options = parse_store_args(args, true);
  if (!options) {
    std::fprintf(stderr, "usage: migraine-connector ingest [--config FILE] RECORD_FILE...\n");
    return exit_usage;
  }
  const connector_config config = load_config(options->config_path);
  const mappings::mapping_source tables(mappings::mapping_set::load(config.code_tables_path, config.mapping));
  sync_log log(config.log);
  const auto opened = open_outbox(config.store, store_access_of(config.store, log));
  outbox& store = *opened;
  const patient_key patients = patient_key::open_for(store, config.store.patient_key_file);
  intake records(tables, patients, log, now_ms);

  int exit_code = exit_ok;
  for (const auto& path : options->files) {
    const record_file file = read_record_file(path);
    if (!file.error.empty()) {
      std::fprintf(stderr, "%s: %s\n", printable(path).c_str(), printable(file.error).c_str());
      exit_code = exit_usage;
      continue;
    }
    // One transaction per file: nothing below is printed before it is durable.
    const auto results = records.take(store, file.records, path, "cli");
    std::printf("%s: %s\n", printable(path).c_str(), describe_batch(results).c_str());
    for (const auto& r : results) {
      if (r.accepted) continue;
      const std::string label = path + ":" + (r.record_id.empty() ? "line " + std::to_string(r.line) : r.record_id);
      for (const auto& p : r.problems) {
        if (p.path.empty()) {
          std::printf("  rejected %s: %s\n", printable(label).c_str(), printable(p.message).c_str());
        } else {
          std::printf("  rejected %s: %s: %s\n", printable(label).c_str(), printable(p.path).c_str(),
                      printable(p.message).c_str());
        }
      }
      if (exit_code == exit_ok) exit_code = exit_rejected;
    }
  }
  return exit_code;
}

}  // namespace connector
