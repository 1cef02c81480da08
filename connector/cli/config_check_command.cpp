// `config-check`: the configuration, code tables, store, certificates, secrets and inbox, checked
// before the daemon is started.
#include <unistd.h>

#include <cstdio>

#include "connector/cli/commands.h"
#include "connector/config/certificate_files.h"
#include "connector/config/config.h"
#include "connector/config/patient_key.h"
#include "connector/daemon/delivery_setup.h"
#include "connector/outbox/sqlite_outbox.h"
#include "mappings/code_tables.h"

namespace connector {

int run_config_check(const std::vector<std::string>& args) {
  std::vector<std::string> seen;
  const auto config_path = config_only(args, {}, seen);
  int problems = 0;
  auto ok = [](const std::string& what) { std::printf("ok     %s\n", what.c_str()); };
  auto bad = [&](const std::string& what) {
    std::printf("ERROR  %s\n", what.c_str());
    ++problems;
  };
  const connector_config config = load_config(config_path);  // a bad file throws: reported by main
  ok("configuration " + (config_path ? *config_path : std::string("(defaults)")));
  try {
    mappings::code_tables::load(config.code_tables_path, config.mapping.local_code_system);
    ok("code tables " + config.code_tables_path);
  } catch (const std::exception& e) {
    bad(e.what());
  }
  try {
    sqlite_outbox store(config.store.path, config.store.full_sync);
    ok("store " + config.store.path + " (writable)");
    try {
      ok("patient key: " + patient_key::check_for(store, config.store.patient_key_file));
    } catch (const std::exception& e) {
      bad(e.what());
    }
  } catch (const std::exception& e) {
    bad(e.what());
  }
  const std::int64_t now_s = now_ms() / 1000;
  auto expiry = [&](const std::string& setting, const std::string& file) {
    const auto e = read_certificate_expiry(file, now_s);
    if (!e) return bad(setting + " " + file + ": no readable PEM certificate");
    if (e->days_left < 0) return bad(setting + " " + file + ": expired " + std::to_string(-e->days_left) + " days ago");
    const std::string line = setting + " " + file + ": valid for " + std::to_string(e->days_left) + " more days";
    if (e->days_left < 30) {
      std::printf("WARN   %s\n", line.c_str());
    } else {
      ok(line);
    }
  };
  // Every certificate the configuration names: the EHR's, the listeners', the webhook's CA.
  for (const auto& c : configured_certificates(config, now_s)) expiry(c.setting, c.file);
  auto secret = [&](const char* setting, const std::optional<std::string>& file) {
    if (!file) return;
    try {
      read_secret_file(setting, *file);
      ok(std::string(setting) + " " + *file + " (readable, not empty)");
    } catch (const std::exception& e) {
      bad(e.what());
    }
  };
  secret("ingest_api.token_file", config.ingest_api.token_file);
  secret("admin.token_file", config.admin.token_file);
  if (!config.inbox.dir.empty()) {
    if (::access(config.inbox.dir.c_str(), R_OK | W_OK | X_OK) == 0) {
      ok("inbox.dir " + config.inbox.dir + " (readable and writable)");
    } else {
      bad("inbox.dir " + config.inbox.dir + ": missing, or not readable and writable by this user");
    }
  }
  ok("log.path " + config.log.path + (::access(config.log.path.c_str(), F_OK) == 0 ? "" : " (will be created)"));
  if (config.ehr.base_url.empty()) {
    std::printf("note   ehr.base_url is not set: map, check and ingest work; delivery needs it\n");
  } else {
    if (config.ehr.client_cert_file && config.ehr.client_key_file) {
      if (key_matches_certificate(*config.ehr.client_cert_file, *config.ehr.client_key_file)) {
        ok("ehr.client_key_file matches ehr.client_cert_file");
      } else {
        bad("ehr.client_key_file " + *config.ehr.client_key_file + " does not match ehr.client_cert_file");
      }
    }
    try {
      boost::asio::io_context io;
      ehr_client client(io, ehr_settings_of(config.ehr));
      ok("TLS settings for " + config.ehr.base_url + (config.ehr.ca_file ? "" : " (system trust store)"));
    } catch (const std::exception& e) {
      bad(e.what());
    }
  }
  std::printf(problems == 0 ? "configuration OK\n" : "%d problem(s)\n", problems);
  return problems == 0 ? exit_ok : exit_usage;
}

}  // namespace connector
