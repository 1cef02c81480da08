// `replay`: dead letters back to their lanes, with who asked and why kept in the store.
#include <cstdio>
#include <cstdlib>
#include <optional>

#include "connector/cli/commands.h"
#include "connector/config/config.h"
#include "connector/daemon/delivery_setup.h"
#include "connector/observe/sync_log.h"
#include "connector/outbox/open_outbox.h"

namespace connector {

int run_replay(const std::vector<std::string>& args) {
  std::optional<std::string> config_path, record_id, reason;
  bool all_dead = false, dry_run = false, unknown = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const bool has_value = i + 1 < args.size();
    if (args[i] == "--config" && has_value) {
      config_path = args[++i];
    } else if (args[i] == "--record" && has_value) {
      record_id = args[++i];
    } else if (args[i] == "--reason" && has_value) {
      reason = args[++i];
    } else if (args[i] == "--all-dead") {
      all_dead = true;
    } else if (args[i] == "--dry-run") {
      dry_run = true;
    } else {
      unknown = true;
    }
  }
  if (unknown || record_id.has_value() == all_dead || !reason || reason->empty()) {
    std::fprintf(stderr, "usage: migraine-connector replay (--record ID | --all-dead) --reason TEXT [--dry-run] [--config FILE]\n");
    return exit_usage;
  }
  const connector_config config = load_config(config_path);
  const auto store = open_outbox(config.store, {});
  const char* user = std::getenv("USER");
  const std::string who = user != nullptr ? user : "unknown";
  const std::int64_t now = now_ms();
  const auto letters = store->replay(record_id.value_or(""), *reason, who, dry_run, now);
  std::optional<sync_log> log;
  if (!dry_run) log.emplace(config.log);
  for (const auto& l : letters) {
    if (log) {
      sync_event e;
      e.time_ms = now;
      e.name = event::replayed;
      e.record_id = l.record_id;
      e.revision = l.revision;
      e.detail = "by " + who + " (command line; the reason is in the store's replay audit) (was: " + l.last_error + ")";
      log->emit(e);
    }
    std::printf("%s %s revision %d (was: %s)\n", dry_run ? "would replay" : "replayed", printable(l.record_id).c_str(),
                l.revision, printable(l.last_error).c_str());
  }
  if (letters.empty()) {
    std::fprintf(stderr, "no dead letter %s\n", record_id ? ("for record " + *record_id).c_str() : "to replay");
    return exit_usage;
  }
  return exit_ok;
}

}  // namespace connector
