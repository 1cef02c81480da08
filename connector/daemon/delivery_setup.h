// Everything delivery needs, built from the configuration once: shared by `sync --once` and the
// daemon (`run`).
#pragma once

#include <chrono>
#include <cstdint>
#include <random>

#include <boost/asio/io_context.hpp>

#include "connector/clock.h"
#include "connector/config/config.h"
#include "connector/observe/sync_event.h"
#include "connector/outbox/sqlite_outbox.h"
#include "connector/sync/sync_engine.h"
#include "mappings/bundle_mapper.h"
#include "mappings/code_tables.h"

namespace connector {

inline ehr_settings ehr_settings_of(const ehr_config& e) {
  ehr_settings s;
  s.base_url = e.base_url;
  s.ca_file = e.ca_file;
  s.client_cert_file = e.client_cert_file;
  s.client_key_file = e.client_key_file;
  s.connections = e.connections;
  s.timeout = std::chrono::seconds(e.timeout_seconds);
  return s;
}

struct delivery_setup {
  delivery_setup(const connector_config& config, event_sink& events)
      : tables(mappings::code_tables::load(config.code_tables_path, config.mapping.local_code_system)),
        mapper(config.mapping, tables),
        store(config.store.path, config.store.full_sync),
        ehr(io, ehr_settings_of(config.ehr)),
        random(std::random_device{}()),
        engine(io, store, ehr, mapper, tables,
               delivery_policy({config.sync.max_attempts, std::chrono::milliseconds(config.sync.base_delay_ms),
                                std::chrono::milliseconds(config.sync.max_delay_ms)},
                               [this] { return std::uniform_real_distribution<double>(0.0, 1.0)(random); }),
               events, now_ms) {}

  // Records not yet settled: pending, in flight, retry scheduled or held.
  std::int64_t waiting() {
    const outbox_status s = store.status(now_ms());
    return s.records.at(record_state::pending) + s.records.at(record_state::retry_scheduled) +
           s.records.at(record_state::in_flight) + s.records.at(record_state::held);
  }

  boost::asio::io_context io;
  mappings::code_tables tables;
  mappings::bundle_mapper mapper;
  sqlite_outbox store;
  ehr_client ehr;
  std::mt19937_64 random;
  sync_engine engine;
};

}  // namespace connector
