// Minimal RAII over the SQLite C API: a connection and prepared statements. Errors are values
// with their SQLite result code (sqlite_error carries the SQLite message, which never contains
// bound parameter values). As SQLite's careful users do, a statement is reset after any error and
// every statement of a connection is reset before a rollback, so one failure (the store busy, the
// disk full) never leaves a statement in progress that would make every later call fail.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

struct sqlite3;
struct sqlite3_stmt;

namespace connector::sqlite {

struct sqlite_error : std::runtime_error {
  sqlite_error(const std::string& message, int code) : std::runtime_error(message), code(code) {}
  int code;  // the primary result code: SQLITE_BUSY, SQLITE_FULL, ...
  // Another connection holds the lock past the busy timeout: worth trying again later.
  bool busy() const;
};

class statement {
 public:
  statement(sqlite3* db, std::string_view sql);
  ~statement();
  statement(const statement&) = delete;
  statement& operator=(const statement&) = delete;

  statement& bind(int index, std::string_view text);
  statement& bind(int index, std::int64_t value);
  statement& bind_null(int index);
  // Steps once: true while a row is available. On an error the statement is reset, then throws.
  bool step();
  // Resets for reuse, keeping the compiled statement (prepared once, run many times).
  void reset();

  std::int64_t column_int(int index) const;
  std::string column_text(int index) const;
  bool column_is_null(int index) const;

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
};

// Resets the statement when the scope ends, however it ends.
class reset_on_exit {
 public:
  explicit reset_on_exit(statement& s) : s_(s) {}
  ~reset_on_exit() { s_.reset(); }
  reset_on_exit(const reset_on_exit&) = delete;
  reset_on_exit& operator=(const reset_on_exit&) = delete;

 private:
  statement& s_;
};

class database {
 public:
  // `busy_timeout_ms`: how long a statement waits for another connection's lock before SQLITE_BUSY.
  explicit database(const std::string& path, int busy_timeout_ms = 2000);
  ~database();
  database(const database&) = delete;
  database& operator=(const database&) = delete;

  void exec(std::string_view sql);
  // Rows changed by the last INSERT, UPDATE or DELETE on this connection.
  int changes();
  // The rowid of the last INSERT on this connection.
  std::int64_t last_insert_id();
  // Resets every statement of this connection (before a rollback; after an error).
  void reset_all();
  sqlite3* handle() { return db_; }

 private:
  sqlite3* db_ = nullptr;
};

// BEGIN IMMEDIATE ... COMMIT; when not committed (an exception left the scope, COMMIT failed),
// every statement is reset and the transaction rolled back.
class transaction {
 public:
  explicit transaction(database& db);
  ~transaction();
  void commit();

 private:
  database& db_;
  bool done_ = false;
};

}  // namespace connector::sqlite
