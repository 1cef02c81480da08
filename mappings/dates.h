// Calendar dates and RFC 3339 date-times as the contract writes them, with the arithmetic the
// clinical checks need (days between sessions, 90-day windows). No clock: pure values.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mappings {

struct civil_date {
  int year = 1970;
  int month = 1;
  int day = 1;

  // Days since 1970-01-01 (negative before).
  std::int64_t days() const;
  std::string iso() const;  // YYYY-MM-DD
  civil_date plus_days(std::int64_t n) const;
  auto operator<=>(const civil_date&) const = default;
};

// "YYYY-MM-DD" with a real month and day; nullopt otherwise.
std::optional<civil_date> parse_date(std::string_view text);

struct date_time {
  std::string text;          // as written: also a valid FHIR dateTime
  civil_date local_date;     // the calendar date at the clinic, as written
  std::int64_t utc_seconds = 0;  // for ordering instants across offsets
  std::int64_t nanos = 0;
};

// RFC 3339 with seconds and an offset ("2026-11-20T09:30:00-05:00", "...Z"); nullopt otherwise.
std::optional<date_time> parse_date_time(std::string_view text);

bool is_before(const date_time& a, const date_time& b);

}  // namespace mappings
