// `check`: records checked against the contract without mapping, one line per problem.
#include <cstdio>
#include <optional>

#include "connector/cli/commands.h"
#include "connector/config/config.h"
#include "connector/intake/record_files.h"
#include "mappings/code_tables.h"
#include "mappings/record_reader.h"

namespace connector {

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
      std::fprintf(stderr, "%s: %s\n", printable(path).c_str(), printable(file.error).c_str());
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
