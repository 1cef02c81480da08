// Scratch SQLite stores for the benchmarks: a path in the temporary folder, and removing the
// store with its companions (WAL, shared memory, the owners' lock file).
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>

namespace bench {

inline void remove_sqlite(const std::filesystem::path& p) {
  for (const auto* suffix : {"", "-wal", "-shm", "-owners.lock"}) std::filesystem::remove(p.string() + suffix);
}

// PREFIX-PID-NAME in the temporary folder, with nothing left there from an earlier run.
inline std::filesystem::path fresh_sqlite(const std::string& prefix, const std::string& name) {
  const auto p = std::filesystem::temp_directory_path() / (prefix + "-" + std::to_string(::getpid()) + "-" + name);
  remove_sqlite(p);
  return p;
}

}  // namespace bench
