// The online backup of the store: sqlite3_backup_* over the whole database in one step, which
// reads one snapshot (WAL mode: the writer is not blocked while it runs).
#include "connector/outbox/sqlite_backup.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <cstdio>
#include <thread>

#include "connector/outbox/outbox.h"

namespace connector {
namespace {

[[noreturn]] void fail(const std::string& message) { throw store_error(store_error::kind::other, "backup: " + message); }

// Closes a connection when the scope ends, however it ends.
struct connection {
  sqlite3* db = nullptr;
  ~connection() { sqlite3_close(db); }
};

void fsync_path(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) fail("cannot open " + path + " to make it durable");
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) fail("cannot make " + path + " durable (fsync failed)");
}

}  // namespace

backup_summary backup_store(const std::string& store_path, const std::string& to) {
  struct stat seen {};
  if (::stat(to.c_str(), &seen) == 0) fail(to + " exists already: back up to a new file");
  const std::string partial = to + ".partial";
  ::unlink(partial.c_str());  // a copy an earlier, interrupted backup left

  connection source;
  if (sqlite3_open_v2(store_path.c_str(), &source.db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
    fail("cannot open the store " + store_path + ": " + sqlite3_errmsg(source.db));
  }
  sqlite3_busy_timeout(source.db, 5000);

  // Created owner-only before SQLite writes a byte into it.
  const int fd = ::open(partial.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) fail("cannot create " + partial);
  ::close(fd);
  connection target;
  try {
    if (sqlite3_open_v2(partial.c_str(), &target.db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
      fail("cannot open " + partial + ": " + sqlite3_errmsg(target.db));
    }
    sqlite3_backup* copy = sqlite3_backup_init(target.db, "main", source.db, "main");
    if (copy == nullptr) fail("cannot start the copy: " + std::string(sqlite3_errmsg(target.db)));
    int rc = SQLITE_OK;
    for (int attempt = 0; attempt < 100; ++attempt) {  // the store locked by a checkpoint, briefly
      rc = sqlite3_backup_step(copy, -1);
      if (rc != SQLITE_BUSY && rc != SQLITE_LOCKED) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    sqlite3_backup_finish(copy);
    if (rc != SQLITE_DONE) fail("copying " + store_path + " failed: " + sqlite3_errstr(rc));

    // One self-contained file (no -wal beside it), checked before it counts as a backup.
    if (sqlite3_exec(target.db, "PRAGMA journal_mode = DELETE", nullptr, nullptr, nullptr) != SQLITE_OK) {
      fail("cannot finish " + partial + ": " + sqlite3_errmsg(target.db));
    }
    backup_summary summary;
    sqlite3_stmt* q = nullptr;
    std::string check;
    if (sqlite3_prepare_v2(target.db, "PRAGMA quick_check", -1, &q, nullptr) == SQLITE_OK &&
        sqlite3_step(q) == SQLITE_ROW) {
      check = reinterpret_cast<const char*>(sqlite3_column_text(q, 0));
    }
    sqlite3_finalize(q);
    if (check != "ok") fail("the copy in " + partial + " does not pass SQLite's quick_check");
    if (sqlite3_prepare_v2(target.db, "PRAGMA user_version", -1, &q, nullptr) == SQLITE_OK &&
        sqlite3_step(q) == SQLITE_ROW) {
      summary.schema_version = sqlite3_column_int(q, 0);
    }
    sqlite3_finalize(q);
    sqlite3_close(target.db);
    target.db = nullptr;

    fsync_path(partial, O_RDONLY);
    if (::rename(partial.c_str(), to.c_str()) != 0) fail("cannot rename " + partial + " to " + to);
    const std::filesystem::path folder = std::filesystem::path(to).parent_path();
    fsync_path(folder.empty() ? "." : folder.string(), O_RDONLY | O_DIRECTORY);
    if (::stat(to.c_str(), &seen) == 0) summary.bytes = seen.st_size;
    return summary;
  } catch (...) {
    sqlite3_close(target.db);
    target.db = nullptr;
    ::unlink(partial.c_str());
    throw;
  }
}

}  // namespace connector
