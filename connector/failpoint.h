// Failpoints for the crash tests: MIGRAINE_TEST_FAILPOINT=NAME[:N] kills this process with SIGKILL
// the Nth time (default the first) it passes the point NAME, exactly as a power cut or the OOM
// killer would. Unset, a failpoint costs one branch. The names mark the state boundaries of a
// record: see tests/integration/failpoints_test.sh.
#pragma once

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <string>
#include <string_view>

namespace connector {

namespace detail {
struct failpoint_setting {
  std::string name;
  long at = 1;
  std::atomic<long> hits{0};
  failpoint_setting() {
    const char* value = std::getenv("MIGRAINE_TEST_FAILPOINT");
    if (value == nullptr) return;
    name = value;
    if (const auto colon = name.find(':'); colon != std::string::npos) {
      at = std::strtol(name.c_str() + colon + 1, nullptr, 10);
      name.resize(colon);
    }
  }
};
inline failpoint_setting& failpoint_config() {
  static failpoint_setting setting;
  return setting;
}
}  // namespace detail

inline void failpoint(std::string_view name) {
  auto& f = detail::failpoint_config();
  if (f.name.empty() || f.name != name) return;
  if (++f.hits == f.at) ::kill(::getpid(), SIGKILL);
}

}  // namespace connector
