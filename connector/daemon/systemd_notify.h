// Telling systemd how the daemon is (Type=notify): READY=1 once the store is open and the
// listeners are bound, STOPPING=1 at shutdown, WATCHDOG=1 from the event loop. The sd_notify
// protocol is one datagram to the Unix socket named by $NOTIFY_SOCKET; it is written out here
// (systemd documents it as stable) rather than linking libsystemd for one function.
#pragma once

#include <chrono>
#include <optional>
#include <string_view>

namespace connector {

// Sends `state` ("READY=1\nSTATUS=...") when systemd started the process; false otherwise or on
// failure (never fatal: outside systemd there is nobody to tell).
bool notify_systemd(std::string_view state);

// How often systemd wants WATCHDOG=1 ($WATCHDOG_USEC, for this process per $WATCHDOG_PID): ping
// at half of it. nullopt when the unit has no WatchdogSec.
std::optional<std::chrono::microseconds> systemd_watchdog_interval();

}  // namespace connector
