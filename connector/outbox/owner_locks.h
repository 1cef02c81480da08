// Proof of life for the processes that claim records from a SQLite store: each owner holds an
// open-file-description lock on one byte of <store>-owners.lock (byte N for owner N) while it
// lives, and the daemon also holds byte 0, so only one daemon runs per store. The kernel drops
// the locks when the process dies however it dies (SIGKILL included), which is what lets another
// process take over a dead owner's claims at once instead of waiting for their leases to run out.
// OFD locks (not classic POSIX ones) because closing any other descriptor of the file, as SQLite
// and this process do, would silently drop classic locks.
#pragma once

#include <cstdint>
#include <string>

namespace connector {

class owner_locks {
 public:
  // Opens (creates, owner-only) the lock file beside the store. Throws std::runtime_error.
  explicit owner_locks(const std::string& store_path);
  ~owner_locks();
  owner_locks(const owner_locks&) = delete;
  owner_locks& operator=(const owner_locks&) = delete;

  // Takes byte `slot` for as long as this object lives (or until unlock); false when another
  // open file description holds it.
  bool try_lock(std::int64_t slot);
  void unlock(std::int64_t slot);
  // True when another open file description holds byte `slot`: its owner is alive. A lock held
  // through this same object does not count (the caller knows its own owners).
  bool held_elsewhere(std::int64_t slot) const;

  static constexpr std::int64_t daemon_slot = 0;

 private:
  int fd_ = -1;
};

}  // namespace connector
