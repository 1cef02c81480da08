// `ingest` and `status`: records into the durable outbox, and what the outbox holds.
#include <chrono>
#include <cstdio>
#include <optional>
#include <random>

#include "connector/commands.h"
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
  return exit_ok;
}

}  // namespace connector

namespace connector {

int run_sync(const std::vector<std::string>& args) {
  std::optional<std::string> config_path;
  bool once = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--config" && i + 1 < args.size()) {
      config_path = args[++i];
    } else if (args[i] == "--once") {
      once = true;
    } else {
      once = false;
      break;
    }
  }
  if (!once) {
    std::fprintf(stderr, "usage: migraine-connector sync --once [--config FILE]\n");
    return exit_usage;
  }
  const connector_config config = load_config(config_path);
  if (config.ehr.base_url.empty()) throw config_error("setting ehr.base_url is required to deliver");
  const auto tables = mappings::code_tables::load(config.code_tables_path, config.mapping.local_code_system);
  const mappings::bundle_mapper mapper(config.mapping, tables);
  sqlite_outbox store(config.store.path, config.store.full_sync);

  boost::asio::io_context io;
  ehr_client ehr(io, {config.ehr.base_url, config.ehr.ca_file, config.ehr.client_cert_file,
                      config.ehr.client_key_file, config.ehr.connections,
                      std::chrono::seconds(config.ehr.timeout_seconds)});
  std::mt19937_64 random{std::random_device{}()};
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  delivery_policy policy({config.sync.max_attempts, std::chrono::milliseconds(config.sync.base_delay_ms),
                          std::chrono::milliseconds(config.sync.max_delay_ms)},
                         [&] { return unit(random); });
  sync_engine engine(io, store, ehr, mapper, tables, std::move(policy), now_ms);
  const sync_report report = engine.run_once();

  const outbox_status s = store.status(now_ms());
  const std::int64_t waiting = s.records.at(record_state::pending) + s.records.at(record_state::retry_scheduled) +
                               s.records.at(record_state::in_flight) + s.records.at(record_state::held);
  std::printf("delivered %d, retries scheduled %d, dead letters %d, held %d; %lld still waiting\n",
              report.delivered, report.retries_scheduled, report.dead, report.held,
              static_cast<long long>(waiting));
  std::printf("TLS handshakes: %lld\n", static_cast<long long>(ehr.handshakes()));
  if (report.auth_fault) std::printf("EHR: authentication fault, delivery paused: %s\n", report.last_error->c_str());
  else if (report.ehr_unreachable) std::printf("EHR: unreachable: %s\n", report.last_error->c_str());
  else if (report.last_error) std::printf("last error: %s\n", report.last_error->c_str());
  return waiting > 0 ? exit_waiting : exit_ok;
}

}  // namespace connector
