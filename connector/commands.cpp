// `map` and `check`: the offline path from record files through the reader, the checks and the
// mapper to transaction Bundles, with every problem named by file, record and field.
#include "connector/commands.h"

#include <cstdio>
#include <iostream>
#include <optional>
#include <unordered_map>

#include "connector/config.h"
#include "connector/record_files.h"
#include "fhir/issue.h"
#include "fhir/json_writer.h"
#include "mappings/bundle_mapper.h"
#include "mappings/code_tables.h"
#include "mappings/record_reader.h"

namespace connector {
namespace {

// "file:record_id" for messages; NDJSON records without a readable id are named by line.
std::string record_label(const record_file& file, const record_text& text,
                         const mappings::read_result& result) {
  std::string label = file.path + ":";
  if (!result.record_id.empty()) return label + result.record_id;
  return label + "line " + std::to_string(text.line);
}

void print_problems(std::FILE* to, const std::string& label, const fhir::issues& problems) {
  for (const auto& p : problems) {
    if (p.path.empty()) {
      std::fprintf(to, "%s: %s\n", label.c_str(), p.message.c_str());
    } else {
      std::fprintf(to, "%s: %s: %s\n", label.c_str(), p.path.c_str(), p.message.c_str());
    }
  }
}

void write_line(std::string_view text) {
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fputc('\n', stdout);
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
    std::printf("    administered %g U in %d sites, discarded %g U: charges 64615 x1, J0585 x%g%s\n",
                p->administered_units(), p->administered_sites(), p->units_discarded,
                p->administered_units(),
                p->units_discarded > 0 ? (", J0585-JW x" + std::to_string(static_cast<long>(p->units_discarded))).c_str()
                                       : "-JZ");
  }
  if (outcome.flags.empty()) std::printf("    flags: none\n");
  for (const auto& f : outcome.flags) {
    std::printf("    flag [%s] %s: %s\n", std::string(mappings::to_string(f.level)).c_str(),
                std::string(f.rule).c_str(), f.detail.c_str());
  }
  if (outcome.waits_for_record) {
    std::printf("    waits for procedure %s (not among the records seen so far)\n",
                outcome.waits_for_record->c_str());
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

  // Earlier records, by patient MRN. Records mapped from the input join their patient's history
  // too, so a file holding a whole care pathway maps as the daemon would deliver it.
  std::unordered_map<std::string, mappings::patient_history> histories;
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
      histories[result.record->patient.mrn].add(std::move(*result.record));
    }
  }

  const record_file file = read_record_file(options->record_file);
  if (!file.error.empty()) {
    std::fprintf(stderr, "%s: %s\n", file.path.c_str(), file.error.c_str());
    return exit_usage;
  }
  static char out_buffer[1 << 20];
  std::setvbuf(stdout, out_buffer, _IOFBF, sizeof out_buffer);

  fhir::json_writer out;
  int exit_code = exit_ok;
  for (const auto& text : file.records) {
    auto result = mappings::read_record(text.json, tables);
    const std::string label = record_label(file, text, result);
    if (!result.record) {
      exit_code = exit_rejected;
      print_problems(stderr, label, result.problems);
      if (options->json) {
        fhir::write_operation_outcome(out, result.problems);
        write_line(out.view());
        out.clear();
      }
      continue;
    }
    mappings::patient_history& history = histories[result.record->patient.mrn];
    const auto outcome = mapper.map(*result.record, history, out);
    if (options->summary) {
      print_summary(*result.record, outcome);
    } else {
      if (options->pretty) {
        write_line(fhir::pretty_json(out.view()));
      } else {
        write_line(out.view());
      }
      for (const auto& f : outcome.flags) {
        std::fprintf(stderr, "%s: flag %s %s: %s\n", label.c_str(),
                     std::string(mappings::to_string(f.level)).c_str(), std::string(f.rule).c_str(),
                     f.detail.c_str());
      }
      if (outcome.waits_for_record) {
        std::fprintf(stderr, "%s: waits for procedure %s, which is not in the history given\n",
                     label.c_str(), outcome.waits_for_record->c_str());
      }
    }
    history.add(std::move(*result.record));
  }
  std::fflush(stdout);
  return exit_code;
}

int run_check(const std::vector<std::string>& args) {
  std::optional<std::string> config_path;
  std::vector<std::string> files;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--config" && i + 1 < args.size()) {
      config_path = args[++i];
    } else if (!args[i].empty() && args[i][0] == '-') {
      files.clear();
      break;
    } else {
      files.push_back(args[i]);
    }
  }
  if (files.empty()) {
    std::fprintf(stderr, "usage: migraine-connector check [--config FILE] RECORD_FILE...\n");
    return exit_usage;
  }
  const connector_config config = load_config(config_path);
  const auto tables = mappings::code_tables::load(config.code_tables_path,
                                                  config.mapping.local_code_system);
  std::size_t checked = 0;
  std::size_t rejected = 0;
  int exit_code = exit_ok;
  for (const auto& path : files) {
    const record_file file = read_record_file(path);
    if (!file.error.empty()) {
      std::fprintf(stderr, "%s: %s\n", path.c_str(), file.error.c_str());
      exit_code = exit_usage;
      continue;
    }
    for (const auto& text : file.records) {
      ++checked;
      const auto result = mappings::read_record(text.json, tables);
      if (result.record) continue;
      ++rejected;
      if (exit_code == exit_ok) exit_code = exit_rejected;
      print_problems(stdout, record_label(file, text, result), result.problems);
    }
  }
  std::fprintf(stderr, "%zu record(s) checked, %zu rejected\n", checked, rejected);
  return exit_code;
}

}  // namespace connector
