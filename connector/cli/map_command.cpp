// `map`: the offline path from record files through the reader, the checks and the mapper to
// transaction Bundles, with every problem named by file, record and field.
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <unordered_map>

#include "connector/cli/commands.h"
#include "connector/config/config.h"
#include "connector/intake/record_files.h"
#include "fhir/issue.h"
#include "fhir/json_writer.h"
#include "mappings/bundle_mapper.h"
#include "mappings/code_tables.h"
#include "mappings/record_reader.h"

namespace connector {
namespace {

// A Bundle is tens of kilobytes: it goes to the descriptor in one writev, not through stdio's
// buffer (a copy of every byte, a twentieth of the command's time).
void write_line(std::string_view text) {
  std::fflush(stdout);
  char newline = '\n';
  iovec parts[2] = {{const_cast<char*>(text.data()), text.size()}, {&newline, 1}};
  int count = 2;
  iovec* at = parts;
  while (count > 0) {
    const ssize_t n = ::writev(STDOUT_FILENO, at, count);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error(std::string("cannot write the Bundles: ") + std::strerror(errno));
    }
    auto left = static_cast<std::size_t>(n);
    while (count > 0 && left >= at->iov_len) {
      left -= at->iov_len;
      ++at;
      --count;
    }
    if (count > 0) {
      at->iov_base = static_cast<char*>(at->iov_base) + left;
      at->iov_len -= left;
    }
  }
}

// What one record yields, for people: no patient data, only ids, counts and flags.
void print_summary(const mappings::clinic_record& record, const mappings::mapping_outcome& outcome) {
  std::printf("%s  %s, revision %d%s -> transaction Bundle of %zu entries\n", record.record_id.c_str(),
              record.type_name(), record.revision,
              record.status == mappings::record_status::entered_in_error ? " (entered-in-error)" : "",
              outcome.entries);
  std::string counts;
  for (const auto& [type, n] : outcome.resource_counts) {
    counts += (counts.empty() ? "" : ", ") + std::string(type) + " " + std::to_string(n);
  }
  std::printf("    resources: %s\n", counts.c_str());
  if (const auto* p = std::get_if<mappings::procedure>(&record.body)) {
    const double given = p->administered_units();
    std::printf("    administered %g U in %d sites, discarded %g U: charges 64615 x1, J0585 x%g%s",
                given, p->administered_sites(), p->units_discarded, given,
                p->units_discarded > 0 ? ", J0585-JW x" : "-JZ\n");
    if (p->units_discarded > 0) std::printf("%g\n", p->units_discarded);
  }
  if (outcome.flags.empty()) std::printf("    flags: none\n");
  for (const auto& f : outcome.flags) {
    std::printf("    flag [%s] %s: %s\n", std::string(mappings::to_string(f.level)).c_str(),
                std::string(f.rule).c_str(), f.detail.c_str());
  }
}

struct map_options {
  std::optional<std::string> config_path;
  std::vector<std::string> history_files;
  std::string record_file;
  bool json = false;
  bool pretty = false;
  bool summary = false;
};

std::optional<map_options> parse_map_args(const std::vector<std::string>& args) {
  map_options o;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&]() -> std::optional<std::string> {
      if (i + 1 >= args.size()) return std::nullopt;
      return args[++i];
    };
    if (a == "--config") {
      if (!(o.config_path = value())) return std::nullopt;
    } else if (a == "--history") {
      auto v = value();
      if (!v) return std::nullopt;
      o.history_files.push_back(*v);
    } else if (a == "--json") {
      o.json = true;
    } else if (a == "--pretty") {
      o.pretty = true;
    } else if (a == "--summary") {
      o.summary = true;
    } else if (!a.empty() && a[0] == '-') {
      return std::nullopt;
    } else if (o.record_file.empty()) {
      o.record_file = a;
    } else {
      return std::nullopt;
    }
  }
  if (o.record_file.empty()) return std::nullopt;
  return o;
}


// Maps records as the daemon will deliver them: each joins its patient's history once mapped;
// a follow-up whose procedure has not been seen waits and is mapped as soon as it arrives; a
// revision not newer than one already seen is a no-op.
class pathway_mapper {
 public:
  pathway_mapper(const mappings::bundle_mapper& mapper, const map_options& options)
      : mapper_(mapper), options_(options) {}

  void add_history(mappings::clinic_record record) {
    histories_[record.patient.mrn].add(std::move(record));
  }

  void offer(mappings::clinic_record record, std::string label) {
    const std::string mrn = record.patient.mrn;
    if (!try_map(record, label)) {
      waiting_.push_back({std::move(record), std::move(label)});
      return;
    }
    // Each mapped record may be what a waiting follow-up of the same patient needs.
    for (bool progress = true; progress;) {
      progress = false;
      for (auto it = waiting_.begin(); it != waiting_.end(); ++it) {
        if (it->record.patient.mrn == mrn && try_map(it->record, it->label)) {
          waiting_.erase(it);
          progress = true;
          break;
        }
      }
    }
  }

  // Reports the records still waiting; true when there are any.
  bool report_waiting() const {
    for (const auto& w : waiting_) {
      std::fprintf(stderr, "%s: held: waits for procedure %s, which is not among the records given; "
                           "not mapped\n",
                   w.label.c_str(), std::get<mappings::follow_up>(w.record.body).procedure_record_id.c_str());
    }
    return !waiting_.empty();
  }

 private:
  struct waiting_record {
    mappings::clinic_record record;
    std::string label;
  };

  // Maps and prints the record; false when it must wait.
  bool try_map(mappings::clinic_record& record, const std::string& label) {
    mappings::patient_history& history = histories_[record.patient.mrn];
    const auto outcome = mapper_.map(record, history, out_);
    if (outcome.result == mappings::mapping_result::waits) return false;
    if (outcome.result == mappings::mapping_result::stale) {
      std::fprintf(stderr, "%s: revision %d is not newer than revision %d already seen: no-op\n",
                   label.c_str(), record.revision, outcome.newer_revision_seen);
      return true;
    }
    if (options_.summary) {
      print_summary(record, outcome);
    } else {
      if (options_.pretty) {
        write_line(fhir::pretty_json(out_.view()));
      } else {
        write_line(out_.view());
      }
      for (const auto& f : outcome.flags) {
        std::fprintf(stderr, "%s: flag %s %s: %s\n", label.c_str(),
                     std::string(mappings::to_string(f.level)).c_str(), std::string(f.rule).c_str(),
                     f.detail.c_str());
      }
    }
    history.add(std::move(record));
    return true;
  }

  const mappings::bundle_mapper& mapper_;
  const map_options& options_;
  std::unordered_map<std::string, mappings::patient_history> histories_;  // by MRN
  std::vector<waiting_record> waiting_;
  fhir::json_writer out_;
};

}  // namespace

int run_map(const std::vector<std::string>& args) {
  const auto options = parse_map_args(args);
  if (!options) {
    std::fprintf(stderr,
                 "usage: migraine-connector map [--config FILE] [--history FILE]... [--json] "
                 "[--pretty] [--summary] RECORD_FILE\n");
    return exit_usage;
  }
  const connector_config config = load_config(options->config_path);
  const auto tables = mappings::code_tables::load(config.code_tables_path,
                                                  config.mapping.local_code_system);
  const mappings::bundle_mapper mapper(config.mapping, tables);
  pathway_mapper pathway(mapper, *options);

  for (const auto& path : options->history_files) {
    const record_file file = read_record_file(path);
    if (!file.error.empty()) {
      std::fprintf(stderr, "history file %s: %s\n", path.c_str(), file.error.c_str());
      return exit_usage;
    }
    for (const auto& text : file.records) {
      auto result = mappings::read_record(text.json, tables);
      if (!result.record) {
        std::fprintf(stderr, "history record is not valid; fix or remove it:\n");
        print_problems(stderr, record_label(file, text, result), result.problems);
        return exit_usage;
      }
      pathway.add_history(std::move(*result.record));
    }
  }

  const record_file file = read_record_file(options->record_file);
  if (!file.error.empty()) {
    std::fprintf(stderr, "%s: %s\n", file.path.c_str(), file.error.c_str());
    return exit_usage;
  }
  static char out_buffer[1 << 20];
  std::setvbuf(stdout, out_buffer, _IOFBF, sizeof out_buffer);

  bool rejected = false;
  fhir::json_writer outcome_json;
  for (const auto& text : file.records) {
    auto result = mappings::read_record(text.json, tables);
    std::string label = record_label(file, text, result);
    if (!result.record) {
      rejected = true;
      print_problems(stderr, label, result.problems);
      if (options->json) {
        outcome_json.clear();
        fhir::write_operation_outcome(outcome_json, result.problems);
        write_line(outcome_json.view());
      }
      continue;
    }
    pathway.offer(std::move(*result.record), std::move(label));
  }
  const bool waiting = pathway.report_waiting();
  std::fflush(stdout);
  if (rejected) return exit_rejected;
  return waiting ? exit_waiting : exit_ok;
}

}  // namespace connector
