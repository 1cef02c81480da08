// SQLite RAII helpers.
#include "connector/outbox/sqlite.h"

#include <fcntl.h>
#include <unistd.h>

#include <sqlite3.h>

namespace connector::sqlite {
namespace {

[[noreturn]] void fail(sqlite3* db, std::string_view what, int code) {
  throw sqlite_error(std::string(what) + ": " + (db != nullptr ? sqlite3_errstr(code) : "out of memory"), code & 0xff);
}

}  // namespace

bool sqlite_error::busy() const { return code == SQLITE_BUSY || code == SQLITE_LOCKED; }

statement::statement(sqlite3* db, std::string_view sql) : db_(db) {
  const int rc = sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT, &stmt_,
                                    nullptr);
  if (rc != SQLITE_OK) {
    throw sqlite_error(std::string("prepare: ") + sqlite3_errmsg(db), rc & 0xff);
  }
}

statement::~statement() { sqlite3_finalize(stmt_); }

statement& statement::bind(int index, std::string_view text) {
  const int rc = sqlite3_bind_text(stmt_, index, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
  if (rc != SQLITE_OK) fail(db_, "bind", rc);
  return *this;
}

statement& statement::bind(int index, std::int64_t value) {
  const int rc = sqlite3_bind_int64(stmt_, index, value);
  if (rc != SQLITE_OK) fail(db_, "bind", rc);
  return *this;
}

statement& statement::bind_null(int index) {
  const int rc = sqlite3_bind_null(stmt_, index);
  if (rc != SQLITE_OK) fail(db_, "bind", rc);
  return *this;
}

bool statement::step() {
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  reset();  // an unreset statement would make every later bind fail with MISUSE
  fail(db_, "step", rc);
}

void statement::reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

std::int64_t statement::column_int(int index) const { return sqlite3_column_int64(stmt_, index); }

std::string statement::column_text(int index) const {
  const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, index));
  return text != nullptr ? std::string(text, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, index)))
                         : std::string();
}

bool statement::column_is_null(int index) const {
  return sqlite3_column_type(stmt_, index) == SQLITE_NULL;
}

database::database(const std::string& path, int busy_timeout_ms) {
  // The store holds patient data: owner-only from the start (SQLite gives its -wal and -shm files
  // the same permissions as the database file). Only when it does not exist yet: closing a
  // descriptor of a file drops every POSIX lock this process holds on it, and another connection
  // of this process (the daemon has several) may hold SQLite's locks on it.
  if (::access(path.c_str(), F_OK) != 0) {
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd >= 0) ::close(fd);
  }
  const int rc = sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                                 nullptr);
  if (rc != SQLITE_OK) {
    std::string message = "cannot open the store " + path;
    message += ": ";
    message += db_ != nullptr ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    throw sqlite_error(message, rc & 0xff);
  }
  sqlite3_extended_result_codes(db_, 0);
  sqlite3_busy_timeout(db_, busy_timeout_ms);
}

database::~database() { sqlite3_close(db_); }

void database::exec(std::string_view sql) {
  char* error = nullptr;
  const int rc = sqlite3_exec(db_, std::string(sql).c_str(), nullptr, nullptr, &error);
  if (rc != SQLITE_OK) {
    std::string message = error != nullptr ? error : sqlite3_errstr(rc);
    sqlite3_free(error);
    throw sqlite_error(message, rc & 0xff);
  }
}

int database::changes() { return sqlite3_changes(db_); }
std::int64_t database::last_insert_id() { return sqlite3_last_insert_rowid(db_); }

void database::reset_all() {
  for (sqlite3_stmt* s = sqlite3_next_stmt(db_, nullptr); s != nullptr; s = sqlite3_next_stmt(db_, s)) {
    sqlite3_reset(s);
  }
}

namespace {

// Ends whatever transaction is open on the connection, after resetting every statement (one
// still in progress would make the rollback fail with "SQL statements in progress").
void roll_back(database& db) {
  db.reset_all();
  if (sqlite3_get_autocommit(db.handle()) != 0) return;
  try {
    db.exec("ROLLBACK");
  } catch (const sqlite_error&) {
    // SQLite rolls back by itself when the connection closes; the caller sees the original error.
  }
}

}  // namespace

transaction::transaction(database& db) : db_(db) {
  try {
    db_.exec("BEGIN IMMEDIATE");
  } catch (const sqlite_error&) {
    roll_back(db_);  // a BEGIN that failed halfway may have opened the transaction all the same
    throw;
  }
}

transaction::~transaction() {
  if (!done_) roll_back(db_);
}

void transaction::commit() {
  db_.exec("COMMIT");  // on failure (busy, full disk) the destructor rolls back
  done_ = true;
}

}  // namespace connector::sqlite
