// Minimal RAII over the SQLite C API: a connection and prepared statements. Errors are values
// (sqlite_error carries the SQLite message, which never contains bound parameter values).
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
  using std::runtime_error::runtime_error;
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
  // Steps once: true while a row is available.
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

class database {
 public:
  explicit database(const std::string& path);
  ~database();
  database(const database&) = delete;
  database& operator=(const database&) = delete;

  void exec(std::string_view sql);
  // Rows changed by the last INSERT, UPDATE or DELETE on this connection.
  int changes();
  // The rowid of the last INSERT on this connection.
  std::int64_t last_insert_id();
  sqlite3* handle() { return db_; }

 private:
  sqlite3* db_ = nullptr;
};

// BEGIN IMMEDIATE ... COMMIT, rolled back if not committed (an exception left the scope).
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