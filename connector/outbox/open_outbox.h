// Opening the outbox the configuration names: a SQLite file (store.kind sqlite, the default) or a
// PostgreSQL database shared by several instances (store.kind postgresql).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "connector/config/config.h"
#include "connector/outbox/outbox.h"

namespace connector {

// How one connection waits: a store locked by another connection (SQLite) or a lane row another
// instance holds (PostgreSQL) is waited for busy_timeout_ms, busy_attempts times, each wait
// reported to on_busy, before the operation fails as busy.
struct store_access {
  int busy_timeout_ms = 2000;
  int busy_attempts = 3;
  std::function<void(std::string_view operation, int attempt)> on_busy;
};

// Opens (creates, migrates) the store. Throws store_error, or config_error for an unreadable
// store.password_file.
std::unique_ptr<outbox> open_outbox(const store_config& config, const store_access& access);

// The store for people: "/var/lib/migraine-connector/outbox.db", "PostgreSQL database q on db1".
std::string store_name(const store_config& config);

}  // namespace connector
