// The connector's configuration file: JSON with comments, every setting optional.
// Read once at start-up; a bad file is the one place an exception may fly (caught in main).
#pragma once

#include <map>
#include <optional>
#include <stdexcept>
#include <string>

#include "mappings/mapping_config.h"

namespace connector {

struct config_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct store_config {
  // sqlite (default): one connector on one file. postgresql: several connectors share one queue.
  enum class kind { sqlite, postgresql };
  kind what = kind::sqlite;
  std::string path = "migraine-connector.db";  // the outbox's SQLite file
  // postgresql: a libpq connection string or URI, without a password; the password comes from
  // password_file (or libpq's PGPASSWORD / ~/.pgpass), never from the configuration.
  std::string url;
  std::optional<std::string> password_file;
  std::string patient_key_file;                 // default: <path>.key, created on first use
  bool full_sync = true;                        // synchronous = FULL: "full" (default) or "normal"
  // A write waits this long for another process's lock on the store, three times, before the
  // store counts as busy (delivery then waits, and recovers by itself when the lock is released).
  int busy_timeout_ms = 2000;
};

// How the connector proves who it is to the EHR beyond a client certificate (ehr.auth; absent:
// none). Secrets are read from files, never from this configuration.
struct ehr_auth_config {
  enum class kind { none, smart_backend, client_secret_basic, bearer_file };
  kind what = kind::none;
  std::string client_id;             // smart_backend, client_secret_basic
  std::string scope;                 // smart_backend, client_secret_basic: e.g. system/*.write
  std::optional<std::string> token_url;  // absent: discovered from the FHIR base
  // smart_backend: the signing key (PEM: RSA >= 2048 for RS384, EC P-384 for ES384), its kid,
  // and where the clinic hosts the public JWKS (sent as jku), if it does.
  std::string private_key_file;
  std::string algorithm;  // "RS384" or "ES384"
  std::string key_id;
  std::optional<std::string> jwks_url;
  std::string client_secret_file;  // client_secret_basic
  std::string token_file;          // bearer_file: re-read when it changes
};

std::string_view auth_kind_name(ehr_auth_config::kind k);

// The EHR's FHIR endpoint and how to reach it (paths relative to the configuration file).
struct ehr_config {
  std::string base_url;  // required to deliver: https://host[:port]/fhir-base
  std::optional<std::string> ca_file;           // absent: the system trust store
  std::optional<std::string> client_cert_file;  // absent: no client certificate
  std::optional<std::string> client_key_file;
  int connections = 2;
  int timeout_seconds = 30;
  ehr_auth_config auth;
  // How records are written: auto (chosen from the EHR's CapabilityStatement), transaction, batch
  // or single (connector/sync/ehr_capabilities.h).
  std::string write_mode = "auto";
  // The EHR's own patients and practitioners: "create" (created when absent, where the EHR allows
  // it) or "match" (found by MRN or NPI and never created; none found holds the record, several
  // make it a dead letter). connector/sync/plan_delivery.h.
  std::string patient = "create";
  std::string practitioner = "create";
  // What the EHR will not take, per resource type: "fold" (into a DocumentReference note) or
  // "skip". Unset types keep the defaults (connector/sync/folded_note.h).
  std::map<std::string, std::string> left_out;
  std::string note_format = "text";  // the folded note: "text" (text/plain) or "xhtml"
};

struct sync_config {
  int max_attempts = 10;
  int base_delay_ms = 1000;
  int max_delay_ms = 10 * 60 * 1000;  // also caps an EHR's Retry-After
  // A claim holds this long unless renewed (every third of it, while its request is out): a
  // process that stalls longer has its records taken over; one that dies, at once.
  int lease_seconds = 60;
};

// host:port for a listener. Plain HTTP is allowed only on a loopback address.
struct listen_address {
  std::string host;  // as written: 127.0.0.1, ::1, localhost, 0.0.0.0, a name
  unsigned short port = 0;
  bool loopback() const;
};

// The inbox folder: the practice system drops complete files (.json, .ndjson) into it.
struct inbox_config {
  std::string dir;  // empty: no inbox
  int poll_ms = 1000;
};

// The HTTPS ingest API: POST /v1/records.
struct ingest_api_config {
  std::optional<listen_address> listen;  // absent: no ingest API
  std::optional<std::string> token_file;      // a bearer token, read at start
  std::optional<std::string> client_ca_file;  // client certificates must chain to it
  std::optional<std::string> cert_file;       // the server's certificate and key: TLS
  std::optional<std::string> key_file;
  std::int64_t max_body_bytes = 16 * 1024 * 1024;
  int max_records = 1000;  // per request: a bigger batch gets 413 before anything is read
};

// The admin server: /healthz, /readyz, /metrics, the JSON API and the status page.
struct admin_config {
  std::optional<listen_address> listen;  // absent: no admin server
  std::optional<std::string> token_file;  // required when not on loopback
  std::optional<std::string> cert_file;
  std::optional<std::string> key_file;
};

// The sync log (always on): JSON lines, rotated by size (see observe/sync_log.h).
struct log_config {
  std::string path;  // default: sync-log.jsonl beside the store
  std::int64_t max_bytes = 10 * 1024 * 1024;  // rotate before the file would grow past this
  int keep_files = 5;                         // PATH.1 (newest) ... PATH.N
};

// Alerts: each opens once per incident and closes once, in the log and to the webhook.
struct alerts_config {
  bool enabled = false;           // the section is present
  std::string webhook_url;        // https://...; empty: the log only
  std::optional<std::string> ca_file;  // to verify the webhook's server; absent: system store
  double ehr_unreachable_minutes = 5;
  double oldest_pending_minutes = 30;
  int certificate_days = 30;
};

struct connector_config {
  mappings::mapping_config mapping;
  ehr_config ehr;
  sync_config sync;
  std::string code_tables_path;  // mapping.code_tables, default: the shipped mappings/code-tables.json
  store_config store;
  inbox_config inbox;
  ingest_api_config ingest_api;
  admin_config admin;
  log_config log;
  alerts_config alerts;
};

// Reads a secret (a bearer token) from a file: its first line, without surrounding spaces.
// Throws config_error naming the setting when the file is unreadable or empty.
std::string read_secret_file(const std::string& setting, const std::string& path);

// Loads `path`, or returns the defaults when no path is given. Relative paths inside the file
// are relative to the file's folder. Throws config_error naming the setting at fault.
connector_config load_config(const std::optional<std::string>& path);

}  // namespace connector
