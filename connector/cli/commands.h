// The command-line commands of migraine-connector. Each returns the process exit code:
// 0 done, 1 usage or configuration error, 2 a record was rejected, 3 records still wait.
#pragma once

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "connector/intake/record_files.h"
#include "fhir/issue.h"
#include "mappings/record_reader.h"

namespace connector {

inline constexpr int exit_ok = 0;
inline constexpr int exit_usage = 1;
inline constexpr int exit_rejected = 2;
inline constexpr int exit_waiting = 3;  // held records: they wait for a record not given yet

// Text for a terminal: control characters (C0, DEL, C1) escaped as \n, \t, \xNN, so that a file
// name or a stored detail cannot move the cursor, forge a line or recolour the screen.
std::string printable(std::string_view text);

int run_map(const std::vector<std::string>& args);
int run_check(const std::vector<std::string>& args);
int run_ingest(const std::vector<std::string>& args);
int run_status(const std::vector<std::string>& args);
int run_sync(const std::vector<std::string>& args);
int run_daemon(const std::vector<std::string>& args);
int run_replay(const std::vector<std::string>& args);
int run_config_check(const std::vector<std::string>& args);
int run_log(const std::vector<std::string>& args);
int run_profiles(const std::vector<std::string>& args);
int run_jwks(const std::vector<std::string>& args);
int run_backup(const std::vector<std::string>& args);

// Shared by the commands that take only --config and flags: returns the --config value, puts the
// flags seen in `seen`, and throws config_error for anything else.
std::optional<std::string> config_only(const std::vector<std::string>& args, const std::vector<std::string>& flags,
                                       std::vector<std::string>& seen);

// --config, files (with `takes_files`) or --json (without): what `ingest` and `status` take.
struct store_options {
  std::optional<std::string> config_path;
  std::vector<std::string> files;
  bool json = false;
};
std::optional<store_options> parse_store_args(const std::vector<std::string>& args, bool takes_files);

// "file:record_id" for messages; NDJSON records without a readable id are named by line.
std::string record_label(const record_file& file, const record_text& text, const mappings::read_result& result);
// One line per problem: label: path: message.
void print_problems(std::FILE* to, const std::string& label, const fhir::issues& problems);
// "42 s", "17 min", "3 h 5 min".
std::string duration_text(std::int64_t ms);

struct sync_report;
// One line of what a delivery round did, and the EHR's state when it failed.
void print_report(const sync_report& report, std::int64_t waiting, std::int64_t handshakes);

}  // namespace connector
