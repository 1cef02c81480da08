// `backup --to FILE`: a consistent copy of the store, safe while the daemon runs. Restoring is
// copying the file back in place of the store with the daemon stopped (README "Back up and restore").
#include <cstdio>

#include "connector/cli/commands.h"
#include "connector/config/config.h"
#include "connector/outbox/sqlite_backup.h"

namespace connector {

int run_backup(const std::vector<std::string>& args) {
  std::optional<std::string> config_path, to;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--config" && i + 1 < args.size()) {
      config_path = args[++i];
    } else if (args[i] == "--to" && i + 1 < args.size()) {
      to = args[++i];
    } else {
      throw config_error("backup takes --to FILE and optionally --config FILE; got " + printable(args[i]));
    }
  }
  if (!to) throw config_error("backup needs --to FILE: where to write the copy of the store");
  const connector_config config = load_config(config_path);
  if (config.store.what == store_config::kind::postgresql) {
    // The database's own tools do this better, on the database's machine, with its point-in-time
    // recovery: the connector does not copy a shared database from one of its instances.
    throw config_error("backup copies a SQLite store; a PostgreSQL store (store.kind postgresql) is backed up with "
                       "the database's tools (pg_dump, or its continuous archiving), with the patient key file kept beside");
  }
  const backup_summary done = backup_store(config.store.path, *to);
  std::printf("backup of %s written to %s (%lld bytes, schema version %d)\n", printable(config.store.path).c_str(),
              printable(*to).c_str(), static_cast<long long>(done.bytes), done.schema_version);
  std::printf("restore: stop the daemon, copy it over %s, remove %s-wal and %s-shm if present, start again;\n"
              "keep %s (the patient key) with it: the backup is useless without it\n",
              printable(config.store.path).c_str(), printable(config.store.path).c_str(),
              printable(config.store.path).c_str(),
              printable(config.store.patient_key_file.empty() ? config.store.path + ".key" : config.store.patient_key_file)
                  .c_str());
  return exit_ok;
}

}  // namespace connector
