// The two clocks. The wall clock is for times that are stored or shown (received_at, a retry's
// due time in the outbox, the sync log); the steady clock is for every wait, timer, timeout and
// backoff inside a process, because the wall clock can step backwards or forwards.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>

namespace connector {

// Milliseconds since the epoch, by the wall clock.
inline std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Milliseconds by the steady clock: only differences mean anything.
inline std::int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// A wall clock, injected so tests can set the time.
using clock_ms = std::function<std::int64_t()>;

}  // namespace connector
