// The command-line commands of migraine-connector. Each returns the process exit code:
// 0 done, 1 usage or configuration error, 2 a record was rejected, 3 records still wait.
#pragma once

#include <string>
#include <vector>

namespace connector {

inline constexpr int exit_ok = 0;
inline constexpr int exit_usage = 1;
inline constexpr int exit_rejected = 2;
inline constexpr int exit_waiting = 3;  // held records: they wait for a record not given yet

int run_map(const std::vector<std::string>& args);
int run_check(const std::vector<std::string>& args);
int run_ingest(const std::vector<std::string>& args);
int run_status(const std::vector<std::string>& args);
int run_sync(const std::vector<std::string>& args);
int run_daemon(const std::vector<std::string>& args);
int run_replay(const std::vector<std::string>& args);
int run_config_check(const std::vector<std::string>& args);

}  // namespace connector
