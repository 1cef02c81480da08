// `ingest`, `status`, `sync --once`, `replay` and `config-check`: the outbox from the command line.
// Each command that changes the outbox writes its events to the sync log.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <optional>
#include <random>
#include <algorithm>
#include <atomic>
#include <csignal>
#include <thread>

#include "connector/certificate_files.h"
#include "connector/commands.h"
#include "connector/config.h"
#include "connector/delivery_setup.h"
#include "connector/intake/intake.h"
#include "connector/observe/sync_log.h"
#include "connector/outbox/sqlite_outbox.h"
#include "connector/patient_key.h"
#include "connector/record_files.h"
#include "fhir/json_writer.h"
#include "mappings/code_tables.h"

namespace connector {
namespace {

std::string duration_text(std::int64_t ms) {
  const std::int64_t minutes = ms / 60000;
  if (minutes < 1) return std::to_string(ms / 1000) + " s";
  if (minutes < 120) return std::to_string(minutes) + " min";
  return std::to_string(minutes / 60) + " h " + std::to_string(minutes % 60) + " min";
}

struct store_options {
  std::optional<std::string> config_path;
  std::vector<std::string> files;
  bool json = false;
};

std::optional<store_options> parse(const std::vector<std::string>& args, bool takes_files) {
  store_options o;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--config" && i + 1 < args.size()) {
      o.config_path = args[++i];
    } else if (args[i] == "--json" && !takes_files) {
      o.json = true;
    } else if (!args[i].empty() && args[i][0] != '-' && takes_files) {
      o.files.push_back(args[i]);
    } else {
      return std::nullopt;
    }
  }
  if (takes_files && o.files.empty()) return std::nullopt;
  return o;
}

}  // namespace

int run_ingest(const std::vector<std::string>& args) {
  const auto options = parse(args, true);
  if (!options) {
    std::fprintf(stderr, "usage: migraine-connector ingest [--config FILE] RECORD_FILE...\n");
    return exit_usage;
  }
  const connector_config config = load_config(options->config_path);
  const auto tables = mappings::code_tables::load(config.code_tables_path, config.mapping.local_code_system);
  const patient_key patients = patient_key::load(config.store.patient_key_file);
  sqlite_outbox store(config.store.path, config.store.full_sync);
  sync_log log(config.log);
  intake records(store, tables, patients, log, now_ms);

  int exit_code = exit_ok;
  for (const auto& path : options->files) {
    const record_file file = read_record_file(path);
    if (!file.error.empty()) {
      std::fprintf(stderr, "%s: %s\n", path.c_str(), file.error.c_str());
      exit_code = exit_usage;
      continue;
    }
    // One transaction per file: nothing below is printed before it is durable.
    const auto results = records.take(file.records, path, "cli");
    std::printf("%s: %s\n", path.c_str(), describe_batch(results).c_str());
    for (const auto& r : results) {
      if (r.accepted) continue;
      const std::string label = path + ":" + (r.record_id.empty() ? "line " + std::to_string(r.line) : r.record_id);
      for (const auto& p : r.problems) {
        if (p.path.empty()) {
          std::printf("  rejected %s: %s\n", label.c_str(), p.message.c_str());
        } else {
          std::printf("  rejected %s: %s: %s\n", label.c_str(), p.path.c_str(), p.message.c_str());
        }
      }
      if (exit_code == exit_ok) exit_code = exit_rejected;
    }
  }
  return exit_code;
}

int run_status(const std::vector<std::string>& args) {
  const auto options = parse(args, false);
  if (!options) {
    std::fprintf(stderr, "usage: migraine-connector status [--config FILE] [--json]\n");
    return exit_usage;
  }
  const connector_config config = load_config(options->config_path);
  sqlite_outbox store(config.store.path, config.store.full_sync);
  const outbox_status s = store.status(now_ms());
  if (options->json) {
    std::printf("{\"records\":{");
    bool first = true;
    for (const auto& [state, n] : s.records) {
      std::printf("%s\"%s\":%lld", first ? "" : ",", std::string(to_string(state)).c_str(),
                  static_cast<long long>(n));
      first = false;
    }
    std::printf("},\"quarantined\":%lld,\"oldest_pending_age_s\":", static_cast<long long>(s.quarantined));
    if (s.oldest_pending_age_ms) {
      std::printf("%lld", static_cast<long long>(*s.oldest_pending_age_ms / 1000));
    } else {
      std::printf("null");
    }
    std::printf(",\"last_error\":");
    if (s.last_error) {
      fhir::json_writer text;
      text.string(*s.last_error);
      std::printf("%.*s", static_cast<int>(text.view().size()), text.view().data());
    } else {
      std::printf("null");
    }
    std::printf(",\"ehr\":");
    if (s.ehr_last_contact_ms) {
      fhir::json_writer detail;
      detail.string(s.ehr_detail);
      std::printf("{\"reached\":%s,\"seconds_ago\":%lld,\"detail\":%.*s}", s.ehr_reached ? "true" : "false",
                  static_cast<long long>((now_ms() - *s.ehr_last_contact_ms) / 1000),
                  static_cast<int>(detail.view().size()), detail.view().data());
    } else {
      std::printf("null");
    }
    std::printf("}\n");
    return exit_ok;
  }
  std::printf("store: %s\n", config.store.path.c_str());
  std::printf("records:");
  for (const auto& [state, n] : s.records) {
    std::printf(" %s %lld", std::string(to_string(state)).c_str(), static_cast<long long>(n));
  }
  std::printf("\nquarantined (rejected, kept with their problems): %lld\n",
              static_cast<long long>(s.quarantined));
  std::printf("oldest pending: %s\n",
              s.oldest_pending_age_ms ? duration_text(*s.oldest_pending_age_ms).c_str() : "none");
  std::printf("last error: %s\n", s.last_error ? s.last_error->c_str() : "none");
  if (s.ehr_last_contact_ms) {
    std::printf("EHR: %s %s ago (%s)\n", s.ehr_reached ? "reached" : "NOT reached",
                duration_text(now_ms() - *s.ehr_last_contact_ms).c_str(), s.ehr_detail.c_str());
  } else {
    std::printf("EHR: not contacted yet\n");
  }
  return exit_ok;
}

}  // namespace connector

namespace connector {

void print_report(const sync_report& report, std::int64_t waiting, std::int64_t handshakes) {
  std::printf("delivered %d, retries scheduled %d, dead letters %d, held %d; %lld still waiting\n",
              report.delivered, report.retries_scheduled, report.dead, report.held,
              static_cast<long long>(waiting));
  std::printf("TLS handshakes: %lld\n", static_cast<long long>(handshakes));
  if (report.auth_fault) {
    std::printf("EHR: authentication fault, delivery paused: %s\n", report.last_error->c_str());
  } else if (report.ehr_unreachable) {
    std::printf("EHR: unreachable: %s\n", report.last_error->c_str());
  } else if (report.last_error) {
    std::printf("last error: %s\n", report.last_error->c_str());
  }
}

std::optional<std::string> config_only(const std::vector<std::string>& args, const std::vector<std::string>& flags,
                                       std::vector<std::string>& seen) {
  std::optional<std::string> config_path;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--config" && i + 1 < args.size()) {
      config_path = args[++i];
    } else if (std::find(flags.begin(), flags.end(), args[i]) != flags.end()) {
      seen.push_back(args[i]);
    } else {
      throw config_error("unexpected argument '" + args[i] + "' (try --help)");
    }
  }
  return config_path;
}

int run_sync(const std::vector<std::string>& args) {
  std::vector<std::string> seen;
  const auto config_path = config_only(args, {"--once"}, seen);
  if (seen.empty()) {
    std::fprintf(stderr, "usage: migraine-connector sync --once [--config FILE]\n");
    return exit_usage;
  }
  const connector_config config = load_config(config_path);
  if (config.ehr.base_url.empty()) throw config_error("setting ehr.base_url is required to deliver");
  sync_log log(config.log);
  delivery_setup d(config, log);
  d.engine.recover();
  const sync_report report = d.engine.run_once();
  const std::int64_t waiting = d.waiting();
  print_report(report, waiting, d.ehr.handshakes());
  return waiting > 0 ? exit_waiting : exit_ok;
}

int run_replay(const std::vector<std::string>& args) {
  std::optional<std::string> config_path, record_id, reason;
  bool all_dead = false, dry_run = false, unknown = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const bool has_value = i + 1 < args.size();
    if (args[i] == "--config" && has_value) {
      config_path = args[++i];
    } else if (args[i] == "--record" && has_value) {
      record_id = args[++i];
    } else if (args[i] == "--reason" && has_value) {
      reason = args[++i];
    } else if (args[i] == "--all-dead") {
      all_dead = true;
    } else if (args[i] == "--dry-run") {
      dry_run = true;
    } else {
      unknown = true;
    }
  }
  if (unknown || record_id.has_value() == all_dead || !reason || reason->empty()) {
    std::fprintf(stderr, "usage: migraine-connector replay (--record ID | --all-dead) --reason TEXT [--dry-run] [--config FILE]\n");
    return exit_usage;
  }
  const connector_config config = load_config(config_path);
  sqlite_outbox store(config.store.path, config.store.full_sync);
  const char* user = std::getenv("USER");
  const std::string who = user != nullptr ? user : "unknown";
  const std::int64_t now = now_ms();
  const auto letters = store.replay(record_id.value_or(""), *reason, who, dry_run, now);
  std::optional<sync_log> log;
  if (!dry_run) log.emplace(config.log);
  for (const auto& l : letters) {
    if (log) {
      sync_event e;
      e.time_ms = now;
      e.name = event::replayed;
      e.record_id = l.record_id;
      e.revision = l.revision;
      e.detail = "by " + who + " (command line; the reason is in the store's replay audit) (was: " + l.last_error + ")";
      log->emit(e);
    }
    std::printf("%s %s revision %d (was: %s)\n", dry_run ? "would replay" : "replayed", l.record_id.c_str(),
                l.revision, l.last_error.c_str());
  }
  if (letters.empty()) {
    std::fprintf(stderr, "no dead letter %s\n", record_id ? ("for record " + *record_id).c_str() : "to replay");
    return exit_usage;
  }
  return exit_ok;
}

}  // namespace connector

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
