// Minimal RAII over libpq: one connection, statements prepared once per connection and run with
// text parameters. Errors are values with their SQLSTATE; the message is libpq's primary message
// only, never DETAIL (which can quote row values) and never the connection's password.
#pragma once

#include <libpq-fe.h>

#include <cstdint>
#include <set>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace connector::postgresql {

struct pg_error : std::runtime_error {
  pg_error(const std::string& message, std::string sqlstate, bool connection_lost)
      : std::runtime_error(message), sqlstate(std::move(sqlstate)), connection_lost(connection_lost) {}
  std::string sqlstate;  // "40001", "23505"; empty when the server never answered
  bool connection_lost;  // the connection broke (server gone, network): reconnect and try again
  // Two transactions met (serialization failure, deadlock, a unique key raced, lock timeout):
  // worth running again at once.
  bool conflict() const;
};

// A parameter: text, or SQL NULL.
using param = std::optional<std::string>;
inline param text(std::string_view s) { return std::string(s); }
inline param number(std::int64_t v) { return std::to_string(v); }
inline const param null{};

class rows {
 public:
  explicit rows(PGresult* r) : r_(r, PQclear) {}
  int size() const { return PQntuples(r_.get()); }
  bool empty() const { return size() == 0; }
  bool is_null(int row, int column) const { return PQgetisnull(r_.get(), row, column) != 0; }
  std::string text(int row, int column) const { return PQgetvalue(r_.get(), row, column); }
  std::int64_t number(int row, int column) const;
  // Rows an INSERT/UPDATE/DELETE touched.
  std::int64_t affected() const;

 private:
  std::unique_ptr<PGresult, void (*)(PGresult*)> r_;
};

class connection {
 public:
  // `conninfo`: a libpq connection string or URI; `password`: empty for none (then libpq's own
  // sources, PGPASSWORD or ~/.pgpass, apply). Throws pg_error.
  connection(std::string conninfo, std::string password);
  ~connection();
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  // Runs a statement; `name` prepares it once on this connection and reuses the plan.
  rows exec(std::string_view name, std::string_view sql, const std::vector<param>& params = {});
  // Runs one or more statements without parameters (DDL, BEGIN, COMMIT).
  void run(std::string_view sql);

  bool ok() const { return PQstatus(conn_) == CONNECTION_OK; }
  // Reconnects after the connection broke: prepared statements are gone with it. Throws pg_error.
  void reconnect();
  // Where it connects, for messages: "database migraine on /run/pg" (no user, no password).
  std::string where() const;

 private:
  void open();
  pg_error error_of(PGresult* result) const;

  std::string conninfo_, password_;
  PGconn* conn_ = nullptr;
  std::set<std::string> prepared_;  // statement names prepared on this connection
};

// The keyword of a connection string, if it sets one ("password", "host"). Throws pg_error for a
// string libpq cannot read.
std::optional<std::string> conninfo_value(const std::string& conninfo, std::string_view keyword);

}  // namespace connector::postgresql
