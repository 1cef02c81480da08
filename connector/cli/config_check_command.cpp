// `config-check`: the configuration, code tables, store, certificates, secrets and inbox, checked
// before the daemon is started.
#include <unistd.h>

#include <cstdio>
#include <optional>

#include "connector/cli/commands.h"
#include "connector/config/certificate_files.h"
#include "connector/config/config.h"
#include "connector/config/patient_key.h"
#include "connector/daemon/delivery_setup.h"
#include "connector/outbox/open_outbox.h"
#include "connector/outbox/postgresql_outbox.h"
#include "connector/sync/ehr_capabilities.h"
#include "mappings/code_tables.h"

namespace connector {

namespace {

// ehr.auth: the key against its algorithm, then a real token request (after discovery), reporting
// the endpoint, the granted scope and the token's life, never the token.
template <typename Ok, typename Bad>
void check_auth(const ehr_config& ehr, const Ok& ok, const Bad& bad) {
  const auto& auth = ehr.auth;
  try {
    if (auth.what == ehr_auth_config::kind::smart_backend) {
      const auto key = signing_key::load("ehr.auth.private_key_file", auth.private_key_file, auth.algorithm);
      ok("ehr.auth.private_key_file: " + key.describe() + ", fits " + auth.algorithm);
    }
    boost::asio::io_context io;
    access_tokens tokens(auth, ehr.base_url, token_http_of(io, ehr), steady_ms);
    std::optional<token_result> got;
    tokens.get([&](token_result r) { got = std::move(r); });
    io.run();
    if (!got) return bad("ehr.auth: the token request never finished");
    if (auth.what == ehr_auth_config::kind::bearer_file) {
      if (got->what == token_result::kind::ok) return ok("ehr.auth.token_file " + auth.token_file + " (readable, not empty)");
      return bad("ehr.auth: " + got->error);
    }
    const std::string where = tokens.token_url().empty() ? "" : " from " + tokens.token_url();
    if (got->what != token_result::kind::ok) return bad("ehr.auth: no token" + where + ": " + got->error);
    const auto status = tokens.status();
    ok("ehr.auth: token issued" + where + " (" + std::string(auth_kind_name(auth.what)) + "; scope \"" +
       (status.granted_scope.empty() ? auth.scope + "\" asked, none stated" : status.granted_scope + "\" granted") +
       (status.expires_in_ms ? "; lives " + std::to_string((*status.expires_in_ms + 500) / 1000) + " s" : "") + ")");
  } catch (const std::exception& e) {
    bad(e.what());
  }
}

// ehr.write_mode against the EHR's CapabilityStatement: the strategy in force and, per resource
// type the connector writes, whether it is sent, how, and why not.
template <typename Ok, typename Bad>
void check_write_strategy(const ehr_config& ehr, const Ok& ok, const Bad& bad) {
  try {
    boost::asio::io_context io;
    ehr_client client(io, ehr_settings_of(ehr));
    const auto tokens = access_tokens_of(io, ehr);
    authorized_channel channel(client, tokens.get());
    std::optional<ehr_answer> got;
    channel.send(metadata_request("config-check"), [&](ehr_answer a) {
      got = std::move(a);
      client.close_idle();
    });
    io.run();
    if (!got) return bad("ehr /metadata: no answer");
    std::string error;
    const auto capabilities = capabilities_of(*got, error);
    if (!capabilities) return bad("ehr: " + error);
    const auto strategy = choose_strategy(*capabilities, write_mode_named(ehr.write_mode).value_or(write_mode::automatic));
    const std::string line = "ehr.write_mode " + ehr.write_mode + ": " + std::string(name_of(strategy.mode)) + " (" +
                             strategy.why + (capabilities->software.empty() ? "" : "; " + capabilities->software) + ")";
    if (strategy.deliverable) {
      ok(line);
    } else {
      bad(line + ": delivery would wait: " + strategy.not_deliverable_because);
    }
    for (const auto& t : strategy.types) {
      std::printf("         %-25s %s%s\n", t.type.c_str(), t.how.c_str(), t.why.empty() ? "" : (" (" + t.why + ")").c_str());
    }
  } catch (const std::exception& e) {
    bad(e.what());
  }
}

}  // namespace

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
    const auto store = open_outbox(config.store, {});
    if (const auto problem = store->write_problem()) {
      bad(*problem);
    } else if (auto* pg = dynamic_cast<postgresql_outbox*>(store.get())) {
      // Opening it connected, and created or migrated the schema: say which version it holds.
      ok("store PostgreSQL " + pg->where() + ": connected, schema version " + std::to_string(pg->schema_version()) +
         " (writable)");
    } else {
      ok("store " + config.store.path + " (writable)");
    }
    try {
      ok("patient key: " + patient_key::check_for(*store, config.store.patient_key_file));
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
    if (config.ehr.auth.what != ehr_auth_config::kind::none) check_auth(config.ehr, ok, bad);
    check_write_strategy(config.ehr, ok, bad);
  }
  std::printf(problems == 0 ? "configuration OK\n" : "%d problem(s)\n", problems);
  return problems == 0 ? exit_ok : exit_usage;
}

}  // namespace connector
