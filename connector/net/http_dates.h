// Retry-After, parsed as RFC 9110 section 10.2.3 says: delta-seconds (digits only) or an HTTP-date
// (IMF-fixdate, or the obsolete RFC 850 and asctime forms recipients must also accept).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>

namespace connector {

// The wait the value asks for, from `now_ms` (wall clock, for a date). nullopt for anything
// else ("-5", "12abc", ""), which the caller then ignores. A date in the past means no wait.
// Values beyond a day are returned as a day: the caller caps the wait anyway, and nothing overflows.
std::optional<std::chrono::seconds> parse_retry_after(std::string_view value, std::int64_t now_ms);

// An HTTP-date as seconds since the epoch, or nullopt.
std::optional<std::int64_t> parse_http_date(std::string_view text);

}  // namespace connector
