// The connector's configuration file: JSON with comments, every setting optional.
// Read once at start-up; a bad file is the one place an exception may fly (caught in main).
#pragma once

#include <optional>
#include <stdexcept>
#include <string>

#include "mappings/mapping_config.h"

namespace connector {

struct config_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct store_config {
  std::string path = "migraine-connector.db";  // the outbox's SQLite file
  std::string patient_key_file;                 // default: <path>.key, created on first use
  bool full_sync = true;                        // synchronous = FULL: "full" (default) or "normal"
};

// The EHR's FHIR endpoint and how to reach it (paths relative to the configuration file).
struct ehr_config {
  std::string base_url;  // required to deliver: https://host[:port]/fhir-base
  std::optional<std::string> ca_file;           // absent: the system trust store
  std::optional<std::string> client_cert_file;  // absent: no client certificate
  std::optional<std::string> client_key_file;
  int connections = 2;
  int timeout_seconds = 30;
};

struct sync_config {
  int max_attempts = 10;
  int base_delay_ms = 1000;
  int max_delay_ms = 10 * 60 * 1000;
};

struct connector_config {
  mappings::mapping_config mapping;
  ehr_config ehr;
  sync_config sync;
  std::string code_tables_path;  // mapping.code_tables, default: the shipped mappings/code-tables.json
  store_config store;
};

// Loads `path`, or returns the defaults when no path is given. Relative paths inside the file
// are relative to the file's folder. Throws config_error naming the setting at fault.
connector_config load_config(const std::optional<std::string>& path);

}  // namespace connector
