// Chooses the store from store.kind.
#include "connector/outbox/open_outbox.h"

#include "connector/outbox/postgresql_outbox.h"
#include "connector/outbox/sqlite_outbox.h"

namespace connector {

std::unique_ptr<outbox> open_outbox(const store_config& config, const store_access& access) {
  if (config.what == store_config::kind::postgresql) {
    postgresql_options o;
    o.conninfo = config.url;
    if (config.password_file) o.password = read_secret_file("store.password_file", *config.password_file);
    o.busy_timeout_ms = access.busy_timeout_ms;
    o.busy_attempts = access.busy_attempts;
    o.on_busy = access.on_busy;
    return std::make_unique<postgresql_outbox>(std::move(o));
  }
  sqlite_options o;
  o.full_sync = config.full_sync;
  o.busy_timeout_ms = access.busy_timeout_ms;
  o.busy_attempts = access.busy_attempts;
  o.on_busy = access.on_busy;
  return std::make_unique<sqlite_outbox>(config.path, std::move(o));
}

std::string store_name(const store_config& config) {
  if (config.what != store_config::kind::postgresql) return config.path;
  std::string db, host;
  try {
    db = postgresql::conninfo_value(config.url, "dbname").value_or("");
    host = postgresql::conninfo_value(config.url, "host").value_or("");
  } catch (const postgresql::pg_error&) {
  }
  return "PostgreSQL database " + (db.empty() ? std::string("(default)") : db) + (host.empty() ? "" : " on " + host);
}

}  // namespace connector
