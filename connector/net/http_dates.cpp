// HTTP-date and delta-seconds parsing, strict.
#include "connector/net/http_dates.h"

#include <algorithm>
#include <array>
#include <ctime>

namespace connector {
namespace {

constexpr std::int64_t one_day_s = 24 * 60 * 60;
constexpr std::array<std::string_view, 12> months = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
constexpr std::array<std::string_view, 7> days = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
constexpr std::array<std::string_view, 7> long_days = {"Monday", "Tuesday", "Wednesday", "Thursday",
                                                       "Friday", "Saturday", "Sunday"};

// Reads exactly `n` digits at `at`.
bool digits(std::string_view s, std::size_t at, std::size_t n, int& out) {
  if (at + n > s.size()) return false;
  out = 0;
  for (std::size_t i = at; i < at + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    out = out * 10 + (s[i] - '0');
  }
  return true;
}

int month_of(std::string_view s) {
  for (std::size_t i = 0; i < months.size(); ++i) {
    if (s == months[i]) return static_cast<int>(i);
  }
  return -1;
}

template <std::size_t N>
bool one_of(std::string_view s, const std::array<std::string_view, N>& names) {
  for (auto n : names) {
    if (s == n) return true;
  }
  return false;
}

// hh:mm:ss at `at`.
bool time_of_day(std::string_view s, std::size_t at, std::tm& tm) {
  return digits(s, at, 2, tm.tm_hour) && s.size() > at + 2 && s[at + 2] == ':' && digits(s, at + 3, 2, tm.tm_min) &&
         s.size() > at + 5 && s[at + 5] == ':' && digits(s, at + 6, 2, tm.tm_sec);
}

std::optional<std::int64_t> to_epoch(std::tm tm) {
  if (tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60) return std::nullopt;
  const std::time_t t = ::timegm(&tm);
  if (t == static_cast<std::time_t>(-1)) return std::nullopt;
  return static_cast<std::int64_t>(t);
}

}  // namespace

std::optional<std::int64_t> parse_http_date(std::string_view s) {
  std::tm tm{};
  // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" (29 characters).
  if (s.size() == 29 && s[3] == ',' && one_of(s.substr(0, 3), days)) {
    const int month = month_of(s.substr(8, 3));
    if (s[4] != ' ' || !digits(s, 5, 2, tm.tm_mday) || s[7] != ' ' || month < 0 || s[11] != ' ' ||
        !digits(s, 12, 4, tm.tm_year) || s[16] != ' ' || !time_of_day(s, 17, tm) || s.substr(25) != " GMT") {
      return std::nullopt;
    }
    tm.tm_mon = month;
    tm.tm_year -= 1900;
    return to_epoch(tm);
  }
  // asctime: "Sun Nov  6 08:49:37 1994" (24 characters; the day space-padded).
  if (s.size() == 24 && s[3] == ' ' && one_of(s.substr(0, 3), days)) {
    const int month = month_of(s.substr(4, 3));
    const bool day_ok = s[8] == ' ' ? digits(s, 9, 1, tm.tm_mday) : digits(s, 8, 2, tm.tm_mday);
    if (month < 0 || s[7] != ' ' || !day_ok || s[10] != ' ' || !time_of_day(s, 11, tm) || s[19] != ' ' ||
        !digits(s, 20, 4, tm.tm_year)) {
      return std::nullopt;
    }
    tm.tm_mon = month;
    tm.tm_year -= 1900;
    return to_epoch(tm);
  }
  // RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT"; a two-digit year more than 50 years ahead is in the past.
  const auto comma = s.find(',');
  if (comma != std::string_view::npos && one_of(s.substr(0, comma), long_days)) {
    const std::string_view rest = s.substr(comma + 1);
    int year = 0;
    if (rest.size() != 23 || rest[0] != ' ' || !digits(rest, 1, 2, tm.tm_mday) || rest[3] != '-' ||
        month_of(rest.substr(4, 3)) < 0 || rest[7] != '-' || !digits(rest, 8, 2, year) || rest[10] != ' ' ||
        !time_of_day(rest, 11, tm) || rest.substr(19) != " GMT") {
      return std::nullopt;
    }
    tm.tm_mon = month_of(rest.substr(4, 3));
    tm.tm_year = year + (year < 70 ? 100 : 0);
    return to_epoch(tm);
  }
  return std::nullopt;
}

std::optional<std::chrono::seconds> parse_retry_after(std::string_view value, std::int64_t now_ms) {
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
  if (value.empty()) return std::nullopt;
  if (value.front() >= '0' && value.front() <= '9') {
    std::int64_t seconds = 0;
    for (char c : value) {
      if (c < '0' || c > '9') return std::nullopt;
      seconds = std::min<std::int64_t>(seconds * 10 + (c - '0'), one_day_s);  // no overflow, however long
    }
    return std::chrono::seconds(seconds);
  }
  const auto at = parse_http_date(value);
  if (!at) return std::nullopt;
  const std::int64_t wait = *at - now_ms / 1000;
  return std::chrono::seconds(std::clamp<std::int64_t>(wait, 0, one_day_s));
}

}  // namespace connector
