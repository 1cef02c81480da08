// Configuration loading and checking.
#include "connector/config/config.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "connector/outbox/postgresql.h"
#include "connector/sync/ehr_capabilities.h"
#include "fhir/json_value.h"

#ifndef MIGRAINE_MAPPINGS_DIR
#error "MIGRAINE_MAPPINGS_DIR must name the folder of the shipped code tables"
#endif

namespace connector {
namespace {

namespace fs = std::filesystem;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw config_error("configuration " + path + ": cannot be read");
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Reads one string setting, refusing anything but a non-empty string.
void read_string(const fhir::json_value& section, std::string_view section_name,
                 std::string_view key, std::string& target) {
  const auto* v = section.find(key);
  if (v == nullptr) return;
  if (!v->is_string() || v->text.empty()) {
    throw config_error("setting " + std::string(section_name) + "." + std::string(key) +
                       " must be a non-empty string");
  }
  target = v->text;
}

void read_int(const fhir::json_value& section, std::string_view section_name, std::string_view key,
              int min, int max, int& target) {
  const auto* v = section.find(key);
  if (v == nullptr) return;
  if (!v->is_number() || !v->is_integer || v->number < min || v->number > max) {
    throw config_error("setting " + std::string(section_name) + "." + std::string(key) +
                       " must be a whole number from " + std::to_string(min) + " to " + std::to_string(max));
  }
  target = static_cast<int>(v->number);
}

void refuse_unknown(const fhir::json_value& obj, std::string_view where,
                    std::initializer_list<std::string_view> known) {
  for (const auto& [name, value] : obj.members) {
    if (std::find(known.begin(), known.end(), name) == known.end()) {
      throw config_error("unknown setting " + std::string(where) + (where.empty() ? "" : ".") + name);
    }
  }
}

// Identifier and code systems go into every resource and every conditional URL: a plain URI only.
void check_system_uri(std::string_view setting, const std::string& uri) {
  const bool has_scheme = uri.rfind("http://", 0) == 0 || uri.rfind("https://", 0) == 0 ||
                          uri.rfind("urn:", 0) == 0;
  if (!has_scheme || uri.find_first_of(" |?&#%\"\\") != std::string::npos) {
    throw config_error("setting " + std::string(setting) +
                       " must be an http(s) or urn URI without spaces, |, ?, &, # or %");
  }
}

const fhir::json_value* section(const fhir::json_value& root, const char* name,
                               std::initializer_list<std::string_view> known) {
  const auto* s = root.find(name);
  if (s == nullptr) return nullptr;
  if (!s->is_object()) throw config_error(std::string("setting ") + name + " must be an object");
  refuse_unknown(*s, name, known);
  return s;
}

void read_number(const fhir::json_value& section, std::string_view section_name, std::string_view key,
                 double min, double max, double& target) {
  const auto* v = section.find(key);
  if (v == nullptr) return;
  if (!v->is_number() || v->number < min || v->number > max) {
    std::ostringstream range;
    range << min << " to " << max;
    throw config_error("setting " + std::string(section_name) + "." + std::string(key) + " must be a number from " +
                       range.str());
  }
  target = v->number;
}

listen_address parse_listen(const std::string& setting, const std::string& text) {
  listen_address a;
  std::string port;
  if (!text.empty() && text[0] == '[') {  // [::1]:8443
    const auto close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      throw config_error("setting " + setting + " must be host:port, e.g. 127.0.0.1:8443 or [::1]:8443");
    }
    a.host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string::npos || text.find(':') != colon) {
      throw config_error("setting " + setting + " must be host:port, e.g. 127.0.0.1:8443 or [::1]:8443");
    }
    a.host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  int number = -1;
  try {
    std::size_t used = 0;
    number = std::stoi(port, &used);
    if (used != port.size()) number = -1;
  } catch (const std::exception&) {
  }
  if (a.host.empty() || number < 0 || number > 65535) {
    throw config_error("setting " + setting + " must be host:port with a port from 0 to 65535");
  }
  a.port = static_cast<unsigned short>(number);
  return a;
}

// SECTION.listen, which a listener's section must have.
listen_address required_listen(const fhir::json_value& section, const std::string& name) {
  std::string listen;
  read_string(section, name, "listen", listen);
  if (listen.empty()) throw config_error("setting " + name + ".listen is required in section " + name);
  return parse_listen(name + ".listen", listen);
}

// A listener without a certificate serves plain HTTP: only where nothing but this machine can reach it.
void check_plain_only_on_loopback(const std::string& section, const listen_address& a,
                                  const std::optional<std::string>& cert, const std::optional<std::string>& key) {
  if (cert.has_value() != key.has_value()) {
    throw config_error("settings " + section + ".cert_file and " + section + ".key_file go together");
  }
  if (!cert && !a.loopback()) {
    throw config_error("setting " + section + ".listen is " + a.host + ", not a loopback address: set " + section +
                       ".cert_file and " + section + ".key_file to serve HTTPS, or listen on 127.0.0.1");
  }
}

template <typename Relative>
void read_intake_and_watch(const fhir::json_value& root, const Relative& relative, connector_config& config) {
  auto optional_file = [&](const fhir::json_value& s, const char* name, const char* key, std::optional<std::string>& target) {
    std::string value;
    read_string(s, name, key, value);
    if (!value.empty()) target = relative(value);
  };
  if (const auto* s = section(root, "inbox", {"dir", "poll_ms"})) {
    read_string(*s, "inbox", "dir", config.inbox.dir);
    if (config.inbox.dir.empty()) throw config_error("setting inbox.dir is required in section inbox");
    config.inbox.dir = relative(config.inbox.dir);
    read_int(*s, "inbox", "poll_ms", 10, 600000, config.inbox.poll_ms);
  }
  if (const auto* s = section(root, "ingest_api", {"listen", "token_file", "client_ca_file", "cert_file", "key_file",
                                                   "max_body_bytes", "max_records"})) {
    auto& api = config.ingest_api;
    api.listen = required_listen(*s, "ingest_api");
    optional_file(*s, "ingest_api", "token_file", api.token_file);
    optional_file(*s, "ingest_api", "client_ca_file", api.client_ca_file);
    optional_file(*s, "ingest_api", "cert_file", api.cert_file);
    optional_file(*s, "ingest_api", "key_file", api.key_file);
    if (const auto* v = s->find("max_body_bytes"); v != nullptr) {
      if (!v->is_number() || !v->is_integer || v->number < 1024 || v->number > 1024.0 * 1024 * 1024) {
        throw config_error("setting ingest_api.max_body_bytes must be a whole number from 1024 to 1073741824");
      }
      api.max_body_bytes = static_cast<std::int64_t>(v->number);
    }
    read_int(*s, "ingest_api", "max_records", 1, 100000, api.max_records);
    check_plain_only_on_loopback("ingest_api", *api.listen, api.cert_file, api.key_file);
    if (!api.token_file && !api.client_ca_file) {
      throw config_error("section ingest_api needs ingest_api.token_file or ingest_api.client_ca_file (or both): "
                         "records are patient data, the API never accepts them unauthenticated");
    }
    if (api.client_ca_file && !api.cert_file) {
      throw config_error("setting ingest_api.client_ca_file needs ingest_api.cert_file and ingest_api.key_file: "
                         "client certificates are a TLS feature");
    }
  }
  if (const auto* s = section(root, "admin", {"listen", "token_file", "cert_file", "key_file"})) {
    auto& admin = config.admin;
    admin.listen = required_listen(*s, "admin");
    optional_file(*s, "admin", "token_file", admin.token_file);
    optional_file(*s, "admin", "cert_file", admin.cert_file);
    optional_file(*s, "admin", "key_file", admin.key_file);
    check_plain_only_on_loopback("admin", *admin.listen, admin.cert_file, admin.key_file);
    if (!admin.listen->loopback() && !admin.token_file) {
      throw config_error("setting admin.listen is not a loopback address: set admin.token_file too, so only "
                         "IT staff can read the status and replay records");
    }
  }
  config.log.path = (fs::path(config.store.path).parent_path() / "sync-log.jsonl").string();
  if (const auto* s = section(root, "log", {"path", "max_bytes", "keep_files"})) {
    std::string path;
    read_string(*s, "log", "path", path);
    if (!path.empty()) config.log.path = relative(path);
    double max_bytes = static_cast<double>(config.log.max_bytes);
    read_number(*s, "log", "max_bytes", 4096, 1e12, max_bytes);
    config.log.max_bytes = static_cast<std::int64_t>(max_bytes);
    read_int(*s, "log", "keep_files", 0, 1000, config.log.keep_files);
  }
  if (const auto* s = section(root, "alerts", {"webhook_url", "ca_file", "ehr_unreachable_minutes",
                                               "oldest_pending_minutes", "certificate_days"})) {
    auto& alerts = config.alerts;
    alerts.enabled = true;
    read_string(*s, "alerts", "webhook_url", alerts.webhook_url);
    if (!alerts.webhook_url.empty() && alerts.webhook_url.rfind("https://", 0) != 0) {
      throw config_error("setting alerts.webhook_url must start with https://");
    }
    optional_file(*s, "alerts", "ca_file", alerts.ca_file);
    read_number(*s, "alerts", "ehr_unreachable_minutes", 0, 10080, alerts.ehr_unreachable_minutes);
    read_number(*s, "alerts", "oldest_pending_minutes", 0, 10080, alerts.oldest_pending_minutes);
    read_int(*s, "alerts", "certificate_days", 0, 3650, alerts.certificate_days);
  }
}

}  // namespace

namespace {

// ehr.auth: which keys each kind needs, and nothing a kind does not use.
template <typename Relative>
void read_auth(const fhir::json_value& a, const Relative& relative, ehr_auth_config& out) {
  if (!a.is_object()) throw config_error("setting ehr.auth must be an object");
  std::string kind;
  read_string(a, "ehr.auth", "kind", kind);
  const auto require = [&](const char* key, std::string& target) {
    read_string(a, "ehr.auth", key, target);
    if (target.empty()) throw config_error("setting ehr.auth." + std::string(key) + " is required with kind " + kind);
  };
  const auto optional_url = [&](const char* key, std::optional<std::string>& target) {
    std::string value;
    read_string(a, "ehr.auth", key, value);
    if (value.empty()) return;
    if (value.rfind("https://", 0) != 0 || value.size() <= 8 || value[8] == '/' || value[8] == ':') {
      throw config_error("setting ehr.auth." + std::string(key) + " must be an https:// URL with a host name");
    }
    target = value;
  };
  if (kind == "smart_backend") {
    refuse_unknown(a, "ehr.auth", {"kind", "client_id", "private_key_file", "algorithm", "key_id", "jwks_url", "scope",
                                   "token_url"});
    out.what = ehr_auth_config::kind::smart_backend;
    require("client_id", out.client_id);
    require("private_key_file", out.private_key_file);
    out.private_key_file = relative(out.private_key_file);
    require("algorithm", out.algorithm);
    if (out.algorithm != "RS384" && out.algorithm != "ES384") {
      throw config_error("setting ehr.auth.algorithm must be \"RS384\" or \"ES384\"");
    }
    require("key_id", out.key_id);
    require("scope", out.scope);
    optional_url("jwks_url", out.jwks_url);
    optional_url("token_url", out.token_url);
  } else if (kind == "client_secret_basic") {
    refuse_unknown(a, "ehr.auth", {"kind", "client_id", "client_secret_file", "scope", "token_url"});
    out.what = ehr_auth_config::kind::client_secret_basic;
    require("client_id", out.client_id);
    if (out.client_id.find(':') != std::string::npos) throw config_error("setting ehr.auth.client_id must not contain ':'");
    require("client_secret_file", out.client_secret_file);
    out.client_secret_file = relative(out.client_secret_file);
    require("scope", out.scope);
    optional_url("token_url", out.token_url);
  } else if (kind == "bearer_file") {
    refuse_unknown(a, "ehr.auth", {"kind", "token_file"});
    out.what = ehr_auth_config::kind::bearer_file;
    require("token_file", out.token_file);
    out.token_file = relative(out.token_file);
  } else if (kind == "none") {
    refuse_unknown(a, "ehr.auth", {"kind"});
  } else {
    throw config_error("setting ehr.auth.kind must be \"smart_backend\", \"client_secret_basic\", \"bearer_file\" or "
                       "\"none\"");
  }
  for (char c : out.scope) {
    if (c < 0x21 && c != ' ') throw config_error("setting ehr.auth.scope must be printable scopes separated by spaces");
  }
}

}  // namespace

std::string_view auth_kind_name(ehr_auth_config::kind k) {
  switch (k) {
    case ehr_auth_config::kind::none: return "none";
    case ehr_auth_config::kind::smart_backend: return "smart_backend";
    case ehr_auth_config::kind::client_secret_basic: return "client_secret_basic";
    case ehr_auth_config::kind::bearer_file: return "bearer_file";
  }
  return "none";
}

bool listen_address::loopback() const {
  if (host == "localhost" || host == "::1") return true;
  return host.rfind("127.", 0) == 0 && host.find_first_not_of("0123456789.") == std::string::npos;
}

std::string read_secret_file(const std::string& setting, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw config_error("setting " + setting + ": cannot read " + path);
  std::string line;
  std::getline(in, line);
  const auto first = line.find_first_not_of(" \t\r");
  const auto last = line.find_last_not_of(" \t\r");
  if (first == std::string::npos) throw config_error("setting " + setting + ": " + path + " is empty");
  return line.substr(first, last - first + 1);
}

// A password in store.url would sit in a file staff copy, back up and paste into tickets.
static void check_store_url(const std::string& url) {
  try {
    if (postgresql::conninfo_value(url, "password")) {
      throw config_error("setting store.url holds a password: put it in store.password_file (or PGPASSWORD) "
                         "instead, never in the configuration");
    }
  } catch (const postgresql::pg_error& e) {
    throw config_error(std::string("setting store.url cannot be read: ") + e.what());
  }
}

connector_config load_config(const std::optional<std::string>& path) {
  connector_config config;
  config.code_tables_path = std::string(MIGRAINE_MAPPINGS_DIR) + "/code-tables.json";
  config.store.patient_key_file = config.store.path + ".key";
  config.log.path = "sync-log.jsonl";
  if (!path) return config;

  fhir::json_value root;
  if (auto error = fhir::parse_json_value(read_file(*path), root, true); !error.empty()) {
    throw config_error("configuration " + *path + ": " + error);
  }
  if (!root.is_object()) throw config_error("configuration " + *path + ": must be a JSON object");
  refuse_unknown(root, "", {"mapping", "store", "ehr", "sync", "inbox", "ingest_api", "admin", "log", "alerts"});

  const fs::path folder = fs::path(*path).parent_path();
  if (const auto* m = root.find("mapping")) {
    if (!m->is_object()) throw config_error("setting mapping must be an object");
    refuse_unknown(*m, "mapping",
                   {"identifier_system", "local_code_system", "clinic_id", "clinic_name",
                    "code_tables"});
    auto& mc = config.mapping;
    const bool own_local_system = m->find("local_code_system") != nullptr;
    read_string(*m, "mapping", "identifier_system", mc.identifier_system);
    read_string(*m, "mapping", "local_code_system", mc.local_code_system);
    if (!own_local_system) mc.local_code_system = mc.identifier_system + "/CodeSystem/migraine-local";
    read_string(*m, "mapping", "clinic_id", mc.clinic_id);
    read_string(*m, "mapping", "clinic_name", mc.clinic_name);
    std::string tables;
    read_string(*m, "mapping", "code_tables", tables);
    if (!tables.empty()) config.code_tables_path = (folder / tables).lexically_normal().string();
  }
  if (const auto* st = root.find("store")) {
    if (!st->is_object()) throw config_error("setting store must be an object");
    refuse_unknown(*st, "store", {"kind", "path", "url", "password_file", "patient_key_file", "synchronous",
                                  "busy_timeout_ms"});
    read_int(*st, "store", "busy_timeout_ms", 10, 600000, config.store.busy_timeout_ms);
    auto& sc = config.store;
    std::string kind, store_path, key_file, synchronous;
    read_string(*st, "store", "kind", kind);
    read_string(*st, "store", "path", store_path);
    read_string(*st, "store", "patient_key_file", key_file);
    read_string(*st, "store", "synchronous", synchronous);
    if (!kind.empty() && kind != "sqlite" && kind != "postgresql") {
      throw config_error("setting store.kind must be \"sqlite\" or \"postgresql\"");
    }
    if (kind == "postgresql") {
      sc.what = store_config::kind::postgresql;
      read_string(*st, "store", "url", sc.url);
      if (sc.url.empty()) throw config_error("setting store.url is required with store.kind postgresql");
      check_store_url(sc.url);
      if (!store_path.empty() || !synchronous.empty()) {
        throw config_error(std::string("setting store.") + (store_path.empty() ? "synchronous" : "path") +
                           " is for a SQLite store: with store.kind postgresql the queue lives at store.url");
      }
      // Every instance hashes patients with the same key: it cannot default to a file beside a
      // store that is not a file.
      if (key_file.empty()) {
        throw config_error("setting store.patient_key_file is required with store.kind postgresql: every instance "
                           "must use the same key (copy the file to each machine)");
      }
      std::string password_file;
      read_string(*st, "store", "password_file", password_file);
      if (!password_file.empty()) sc.password_file = (folder / password_file).lexically_normal().string();
    } else if (st->find("url") || st->find("password_file")) {
      throw config_error("settings store.url and store.password_file are for store.kind postgresql");
    }
    if (!store_path.empty()) sc.path = (folder / store_path).lexically_normal().string();
    sc.patient_key_file = key_file.empty() ? sc.path + ".key"
                                           : (folder / key_file).lexically_normal().string();
    if (!synchronous.empty() && synchronous != "full" && synchronous != "normal") {
      throw config_error("setting store.synchronous must be \"full\" or \"normal\"");
    }
    sc.full_sync = synchronous != "normal";
  } else {
    config.store.path = (folder / config.store.path).lexically_normal().string();
    config.store.patient_key_file = config.store.path + ".key";
  }
  auto relative = [&](const std::string& p) { return (folder / p).lexically_normal().string(); };
  if (const auto* e = root.find("ehr")) {
    if (!e->is_object()) throw config_error("setting ehr must be an object");
    refuse_unknown(*e, "ehr", {"base_url", "ca_file", "client_cert_file", "client_key_file",
                               "connections", "timeout_seconds", "auth", "write_mode", "patient", "practitioner",
                               "left_out", "note_format"});
    auto& ec = config.ehr;
    read_string(*e, "ehr", "base_url", ec.base_url);
    for (auto [key, target] : {std::pair{"ca_file", &ec.ca_file}, std::pair{"client_cert_file", &ec.client_cert_file},
                               std::pair{"client_key_file", &ec.client_key_file}}) {
      std::string value;
      read_string(*e, "ehr", key, value);
      if (!value.empty()) *target = relative(value);
    }
    read_int(*e, "ehr", "connections", 1, 64, ec.connections);
    read_int(*e, "ehr", "timeout_seconds", 1, 600, ec.timeout_seconds);
    if (const auto* a = e->find("auth")) read_auth(*a, relative, ec.auth);
    read_string(*e, "ehr", "write_mode", ec.write_mode);
    if (ec.write_mode != "auto" && ec.write_mode != "transaction" && ec.write_mode != "batch" &&
        ec.write_mode != "single") {
      throw config_error("setting ehr.write_mode must be one of auto, transaction, batch, single (not \"" +
                         ec.write_mode + "\")");
    }
    for (auto [key, target] : {std::pair{"patient", &ec.patient}, std::pair{"practitioner", &ec.practitioner}}) {
      read_string(*e, "ehr", key, *target);
      if (*target != "create" && *target != "match") {
        throw config_error(std::string("setting ehr.") + key + " must be create or match (not \"" + *target + "\")");
      }
    }
    read_string(*e, "ehr", "note_format", ec.note_format);
    if (ec.note_format != "text" && ec.note_format != "xhtml") {
      throw config_error("setting ehr.note_format must be text or xhtml (not \"" + ec.note_format + "\")");
    }
    if (const auto* l = e->find("left_out")) {
      if (!l->is_object()) throw config_error("setting ehr.left_out must be an object: resource type -> fold or skip");
      for (const auto& [type, rule] : l->members) {
        const auto& types = written_types();
        if (std::none_of(types.begin(), types.end(), [&](const written_type& t) { return t.type == type; })) {
          throw config_error("setting ehr.left_out." + type + ": not a resource type the connector writes");
        }
        if (!rule.is_string() || (rule.text != "fold" && rule.text != "skip")) {
          throw config_error("setting ehr.left_out." + type + " must be fold or skip");
        }
        ec.left_out[type] = rule.text;
      }
    }
  }
  if (const auto* y = root.find("sync")) {
    if (!y->is_object()) throw config_error("setting sync must be an object");
    refuse_unknown(*y, "sync", {"max_attempts", "base_delay_ms", "max_delay_ms", "lease_seconds"});
    read_int(*y, "sync", "lease_seconds", 5, 3600, config.sync.lease_seconds);
    read_int(*y, "sync", "max_attempts", 1, 1000, config.sync.max_attempts);
    read_int(*y, "sync", "base_delay_ms", 1, 3600000, config.sync.base_delay_ms);
    read_int(*y, "sync", "max_delay_ms", 1, 86400000, config.sync.max_delay_ms);
  }
  read_intake_and_watch(root, relative, config);
  check_system_uri("mapping.identifier_system", config.mapping.identifier_system);
  check_system_uri("mapping.local_code_system", config.mapping.local_code_system);
  if (config.mapping.clinic_id.find_first_of(" |?&#%") != std::string::npos) {
    throw config_error("setting mapping.clinic_id must not contain spaces, |, ?, &, # or %");
  }
  return config;
}

}  // namespace connector
