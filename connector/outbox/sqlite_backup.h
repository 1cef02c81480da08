// `backup --to FILE`: a consistent copy of a live SQLite store, taken with SQLite's online backup
// API while the daemon goes on writing (in WAL mode readers and the writer do not block each other).
#pragma once

#include <cstdint>
#include <string>

namespace connector {

struct backup_summary {
  std::int64_t bytes = 0;
  int schema_version = 0;
};

// Copies the store at `store_path` to `to`, a file that must not exist yet. The copy is written
// beside it as `to`.partial, checked (PRAGMA quick_check), made durable, and only then renamed,
// so `to` is never a half-written backup. Owner-only (0600): a backup holds patient data.
// Throws store_error naming the files.
backup_summary backup_store(const std::string& store_path, const std::string& to);

}  // namespace connector
