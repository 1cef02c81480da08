// What the outbox benchmarks share: scratch SQLite stores (a path in the temporary folder, and
// removing the store with its companions: WAL, shared memory, the owners' lock file), and the
// claim + settle loop they time alike, so their figures compare.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>

#include "connector/outbox/outbox.h"

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

// Claims and delivers `n` records for `owner`, two lane heads at a time, as the engine does, each
// settle noting the EHR contact.
inline void deliver(connector::outbox& store, std::int64_t owner, int n) {
  for (int done = 0; done < n;) {
    for (const auto& c : store.claim(owner, 2, 60000, 2)) {
      store.settle(c, {connector::attempt_report::result::delivered, 0, "", "[]", false, connector::ehr_contact{true, "HTTP 200"}}, 2);
      ++done;
    }
  }
}

}  // namespace bench
