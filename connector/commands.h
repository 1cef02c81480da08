// The command-line commands of migraine-connector. Each returns the process exit code:
// 0 done, 1 usage or configuration error, 2 a record was rejected.
#pragma once

#include <string>
#include <vector>

namespace connector {

inline constexpr int exit_ok = 0;
inline constexpr int exit_usage = 1;
inline constexpr int exit_rejected = 2;

int run_map(const std::vector<std::string>& args);
int run_check(const std::vector<std::string>& args);

}  // namespace connector
