// libpq, wrapped: see postgresql.h.
#include "connector/outbox/postgresql.h"

#include <cstdlib>

namespace connector::postgresql {

bool pg_error::conflict() const {
  return sqlstate == "40001"     // serialization_failure
         || sqlstate == "40P01"  // deadlock_detected
         || sqlstate == "23505"  // unique_violation: two instances stored the same key at once
         || sqlstate == "55P03"; // lock_not_available
}

std::int64_t rows::number(int row, int column) const {
  return std::strtoll(PQgetvalue(r_.get(), row, column), nullptr, 10);
}

std::int64_t rows::affected() const {
  const char* n = PQcmdTuples(r_.get());
  return n && *n ? std::strtoll(n, nullptr, 10) : 0;
}

connection::connection(std::string conninfo, std::string password)
    : conninfo_(std::move(conninfo)), password_(std::move(password)) {
  open();
}

connection::~connection() {
  if (conn_) PQfinish(conn_);
}

void connection::open() {
  // expand_dbname: `dbname` is the whole connection string, the password comes beside it.
  const char* keys[] = {"dbname", password_.empty() ? nullptr : "password", nullptr};
  const char* values[] = {conninfo_.c_str(), password_.empty() ? nullptr : password_.c_str(), nullptr};
  conn_ = PQconnectdbParams(keys, values, 1);
  if (PQstatus(conn_) != CONNECTION_OK) {
    std::string why = conn_ ? PQerrorMessage(conn_) : "out of memory";
    while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
    if (conn_) PQfinish(conn_);
    conn_ = nullptr;
    throw pg_error("cannot connect: " + why, "", true);
  }
  // Messages in the server's own words, quiet about notices (CREATE ... IF NOT EXISTS).
  PQsetNoticeProcessor(conn_, [](void*, const char*) {}, nullptr);
}

void connection::reconnect() {
  if (conn_) PQfinish(conn_);
  conn_ = nullptr;
  prepared_.clear();
  open();
}

std::string connection::where() const {
  std::string db = conn_ ? PQdb(conn_) : "";
  std::string host = conn_ ? PQhost(conn_) : "";
  if (!conn_) {
    db = conninfo_value(conninfo_, "dbname").value_or("");
    host = conninfo_value(conninfo_, "host").value_or("");
  }
  return "database " + (db.empty() ? std::string("(default)") : db) + (host.empty() ? "" : " on " + host);
}

pg_error connection::error_of(PGresult* result) const {
  const char* state = result ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : nullptr;
  const char* primary = result ? PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY) : nullptr;
  const bool lost = PQstatus(conn_) != CONNECTION_OK;
  std::string message = primary ? primary : (lost ? "the connection to the server was lost" : "no answer");
  return pg_error(message, state ? state : "", lost);
}

rows connection::exec(std::string_view name, std::string_view sql, const std::vector<param>& params) {
  if (!conn_) reconnect();
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const auto& p : params) values.push_back(p ? p->c_str() : nullptr);
  const std::string key(name);
  if (!prepared_.count(key)) {
    PGresult* prepared = PQprepare(conn_, key.c_str(), std::string(sql).c_str(), static_cast<int>(params.size()), nullptr);
    if (PQresultStatus(prepared) != PGRES_COMMAND_OK) {
      const pg_error e = error_of(prepared);
      PQclear(prepared);
      throw e;
    }
    PQclear(prepared);
    prepared_.insert(key);
  }
  PGresult* r = PQexecPrepared(conn_, key.c_str(), static_cast<int>(values.size()), values.data(), nullptr, nullptr, 0);
  const auto status = PQresultStatus(r);
  if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) {
    const pg_error e = error_of(r);
    PQclear(r);
    throw e;
  }
  return rows(r);
}

void connection::run(std::string_view sql) {
  if (!conn_) reconnect();
  PGresult* r = PQexec(conn_, std::string(sql).c_str());
  const auto status = PQresultStatus(r);
  if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) {
    const pg_error e = error_of(r);
    PQclear(r);
    throw e;
  }
  PQclear(r);
}

std::optional<std::string> conninfo_value(const std::string& conninfo, std::string_view keyword) {
  char* error = nullptr;
  PQconninfoOption* options = PQconninfoParse(conninfo.c_str(), &error);
  if (!options) {
    // libpq's own message quotes the part it could not read, which may be a password.
    if (error) PQfreemem(error);
    throw pg_error("not a valid libpq connection string or URI", "", false);
  }
  std::optional<std::string> found;
  for (auto* o = options; o->keyword; ++o) {
    if (keyword == o->keyword && o->val && *o->val) found = o->val;
  }
  PQconninfoFree(options);
  return found;
}

}  // namespace connector::postgresql
