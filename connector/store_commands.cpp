// `ingest` and `status`: records into the durable outbox, and what the outbox holds.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <optional>
#include <random>
#include <algorithm>
#include <atomic>
#include <csignal>
#include <thread>

#include "connector/commands.h"
#include "connector/certificate_files.h"
#include "connector/config.h"
#include "connector/outbox/sqlite_outbox.h"
#include "connector/patient_key.h"
#include "connector/sync/sync_engine.h"
#include "fhir/json_writer.h"
#include "mappings/bundle_mapper.h"
#include "connector/record_files.h"
#include "mappings/code_tables.h"
#include "mappings/record_reader.h"

namespace connector {
namespace {

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

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

  int exit_code = exit_ok;
  for (const auto& path : options->files) {
    const record_file file = read_record_file(path);
    if (!file.error.empty()) {
      std::fprintf(stderr, "%s: %s\n", path.c_str(), file.error.c_str());
      exit_code = exit_usage;
      continue;
    }
    std::vector<inbound_record> accepted;
    std::vector<quarantined_record> rejected;
    std::vector<std::string> rejected_labels;
    for (const auto& text : file.records) {
      auto result = mappings::read_record(text.json, tables);
      if (!result.record) {
        const std::string label = path + ":" + (result.record_id.empty() ? "line " + std::to_string(text.line)
                                                                          : result.record_id);
        rejected.push_back({path, result.record_id, std::string(text.json), std::move(result.problems)});
        rejected_labels.push_back(label);
        continue;
      }
      const auto& r = *result.record;
      accepted.push_back({r.record_id, r.revision, r.type_name(), patients.of(r.patient.mrn),
                          std::string(text.json)});
    }
    // One transaction per file: nothing below is printed before it is durable.
    const auto results = store.enqueue(accepted, rejected, now_ms());
    std::size_t counts[4] = {};
    for (auto r : results) ++counts[static_cast<int>(r)];
    std::printf("%s: %zu accepted", path.c_str(), counts[0] + counts[1]);
    if (counts[1] > 0) std::printf(" (%zu superseding an undelivered revision)", counts[1]);
    if (counts[2] > 0) std::printf(", %zu already stored", counts[2]);
    if (counts[3] > 0) std::printf(", %zu older than a stored revision (no-op)", counts[3]);
    std::printf(", %zu rejected\n", rejected.size());
    for (std::size_t i = 0; i < rejected.size(); ++i) {
      for (const auto& p : rejected[i].problems) {
        if (p.path.empty()) {
          std::printf("  rejected %s: %s\n", rejected_labels[i].c_str(), p.message.c_str());
        } else {
          std::printf("  rejected %s: %s: %s\n", rejected_labels[i].c_str(), p.path.c_str(),
                      p.message.c_str());
        }
      }
    }
    if (!rejected.empty() && exit_code == exit_ok) exit_code = exit_rejected;
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

namespace {

// Everything delivery needs, built from the configuration once.
struct delivery_setup {
  explicit delivery_setup(const connector_config& config)
      : tables(mappings::code_tables::load(config.code_tables_path, config.mapping.local_code_system)),
        mapper(config.mapping, tables),
        store(config.store.path, config.store.full_sync),
        ehr(io, {config.ehr.base_url, config.ehr.ca_file, config.ehr.client_cert_file, config.ehr.client_key_file,
                 config.ehr.connections, std::chrono::seconds(config.ehr.timeout_seconds)}),
        random(std::random_device{}()),
        engine(io, store, ehr, mapper, tables,
               delivery_policy({config.sync.max_attempts, std::chrono::milliseconds(config.sync.base_delay_ms),
                                std::chrono::milliseconds(config.sync.max_delay_ms)},
                               [this] { return std::uniform_real_distribution<double>(0.0, 1.0)(random); }),
               now_ms) {}

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

std::atomic<bool> stop_requested{false};
extern "C" void request_stop(int) { stop_requested = true; }

std::optional<std::string> config_only(const std::vector<std::string>& args, std::vector<std::string> flags,
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

}  // namespace

int run_sync(const std::vector<std::string>& args) {
  std::vector<std::string> seen;
  const auto config_path = config_only(args, {"--once"}, seen);
  if (seen.empty()) {
    std::fprintf(stderr, "usage: migraine-connector sync --once [--config FILE]\n");
    return exit_usage;
  }
  const connector_config config = load_config(config_path);
  if (config.ehr.base_url.empty()) throw config_error("setting ehr.base_url is required to deliver");
  delivery_setup d(config);
  d.engine.recover();
  const sync_report report = d.engine.run_once();
  const std::int64_t waiting = d.waiting();
  print_report(report, waiting, d.ehr.handshakes());
  return waiting > 0 ? exit_waiting : exit_ok;
}

int run_daemon(const std::vector<std::string>& args) {
  std::vector<std::string> seen;
  const connector_config config = load_config(config_only(args, {}, seen));
  if (config.ehr.base_url.empty()) throw config_error("setting ehr.base_url is required to deliver");
  delivery_setup d(config);
  d.engine.recover();
  std::signal(SIGTERM, request_stop);
  std::signal(SIGINT, request_stop);
  std::fprintf(stderr, "migraine-connector: delivering to %s; SIGTERM or SIGINT stops after the requests in flight\n",
               config.ehr.base_url.c_str());
  constexpr auto idle = std::chrono::milliseconds(200);  // how soon new or due records are noticed
  int unreachable_rounds = 0;
  while (!stop_requested) {
    const sync_report report = d.engine.run_once(&stop_requested);
    if (report.delivered + report.dead + report.retries_scheduled > 0 || report.auth_fault) {
      print_report(report, d.waiting(), d.ehr.handshakes());
      std::fflush(stdout);
    }
    // The EHR down: back off as a whole, longer each round, rather than try lane after lane.
    unreachable_rounds = report.ehr_unreachable ? unreachable_rounds + 1 : 0;
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(idle);
    if (unreachable_rounds > 0) {
      // From one second, doubling, up to sync.max_delay_ms: the EHR, not one record, is failing.
      const double backoff = 1000.0 * std::pow(2.0, std::min(unreachable_rounds - 1, 20));
      wait = std::chrono::milliseconds(static_cast<std::int64_t>(std::min<double>(backoff, config.sync.max_delay_ms)));
      std::fprintf(stderr, "migraine-connector: EHR unreachable; next try in %lld ms\n", static_cast<long long>(wait.count()));
    }
    for (auto slept = std::chrono::milliseconds(0); slept < wait && !stop_requested; slept += std::chrono::milliseconds(20)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  std::fprintf(stderr, "migraine-connector: stopped; nothing in flight\n");
  return exit_ok;
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
  const auto letters = store.replay(record_id.value_or(""), *reason, user != nullptr ? user : "unknown", dry_run, now_ms());
  for (const auto& l : letters) {
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
  if (config.ehr.base_url.empty()) {
    std::printf("note   ehr.base_url is not set: map, check and ingest work; delivery needs it\n");
  } else {
    const std::int64_t now_s = now_ms() / 1000;
    auto expiry = [&](const char* setting, const std::string& file) {
      const auto e = read_certificate_expiry(file, now_s);
      if (!e) return bad(std::string(setting) + " " + file + ": no readable PEM certificate");
      if (e->days_left < 0) return bad(std::string(setting) + " " + file + ": expired " + std::to_string(-e->days_left) + " days ago");
      const std::string line = std::string(setting) + " " + file + ": valid for " + std::to_string(e->days_left) + " more days";
      if (e->days_left < 30) {
        std::printf("WARN   %s\n", line.c_str());
      } else {
        ok(line);
      }
    };
    if (config.ehr.ca_file) expiry("ehr.ca_file", *config.ehr.ca_file);
    if (config.ehr.client_cert_file) expiry("ehr.client_cert_file", *config.ehr.client_cert_file);
    if (config.ehr.client_cert_file && config.ehr.client_key_file) {
      if (key_matches_certificate(*config.ehr.client_cert_file, *config.ehr.client_key_file)) {
        ok("ehr.client_key_file matches ehr.client_cert_file");
      } else {
        bad("ehr.client_key_file " + *config.ehr.client_key_file + " does not match ehr.client_cert_file");
      }
    }
    try {
      boost::asio::io_context io;
      ehr_client client(io, {config.ehr.base_url, config.ehr.ca_file, config.ehr.client_cert_file,
                             config.ehr.client_key_file, config.ehr.connections,
                             std::chrono::seconds(config.ehr.timeout_seconds)});
      ok("TLS settings for " + config.ehr.base_url + (config.ehr.ca_file ? "" : " (system trust store)"));
    } catch (const std::exception& e) {
      bad(e.what());
    }
  }
  std::printf(problems == 0 ? "configuration OK\n" : "%d problem(s)\n", problems);
  return problems == 0 ? exit_ok : exit_usage;
}

}  // namespace connector
