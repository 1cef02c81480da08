// Date parsing and arithmetic (days-from-civil after H. Hinnant's public-domain algorithm).
#include "mappings/dates.h"

#include <cctype>
#include <cstdio>

namespace mappings {
namespace {

bool is_leap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

int days_in_month(int y, int m) {
  static constexpr int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

std::int64_t days_from_civil(int y, unsigned m, unsigned d) {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

civil_date civil_from_days(std::int64_t z) {
  z += 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const std::int64_t y = static_cast<std::int64_t>(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const unsigned d = doy - (153 * mp + 2) / 5 + 1;
  const unsigned m = mp < 10 ? mp + 3 : mp - 9;
  return {static_cast<int>(y + (m <= 2)), static_cast<int>(m), static_cast<int>(d)};
}

// Reads exactly n digits at text[pos].
bool digits(std::string_view text, std::size_t pos, std::size_t n, int& value) {
  if (pos + n > text.size()) return false;
  value = 0;
  for (std::size_t i = pos; i < pos + n; ++i) {
    if (!std::isdigit(static_cast<unsigned char>(text[i]))) return false;
    value = value * 10 + (text[i] - '0');
  }
  return true;
}

}  // namespace

std::int64_t civil_date::days() const {
  return days_from_civil(year, static_cast<unsigned>(month), static_cast<unsigned>(day));
}

std::string civil_date::iso() const {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02d", year, month, day);
  return buf;
}

civil_date civil_date::plus_days(std::int64_t n) const { return civil_from_days(days() + n); }

std::optional<civil_date> parse_date(std::string_view text) {
  civil_date d;
  if (text.size() != 10 || text[4] != '-' || text[7] != '-') return std::nullopt;
  if (!digits(text, 0, 4, d.year) || !digits(text, 5, 2, d.month) || !digits(text, 8, 2, d.day)) {
    return std::nullopt;
  }
  if (d.year < 1900 || d.month < 1 || d.month > 12 || d.day < 1 ||
      d.day > days_in_month(d.year, d.month)) {
    return std::nullopt;
  }
  return d;
}

std::optional<date_time> parse_date_time(std::string_view text) {
  // YYYY-MM-DDThh:mm:ss[.fraction](Z|+hh:mm|-hh:mm)
  if (text.size() < 20) return std::nullopt;
  auto date = parse_date(text.substr(0, 10));
  if (!date) return std::nullopt;
  if (text[10] != 'T') return std::nullopt;
  int hh, mm, ss;
  if (!digits(text, 11, 2, hh) || text[13] != ':' || !digits(text, 14, 2, mm) ||
      text[16] != ':' || !digits(text, 17, 2, ss)) {
    return std::nullopt;
  }
  if (hh > 23 || mm > 59 || ss > 60) return std::nullopt;  // 60: a leap second
  std::size_t pos = 19;
  std::int64_t nanos = 0;
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    std::size_t start = pos;
    std::int64_t scale = 100000000;
    while (pos < text.size() && std::isdigit(static_cast<unsigned char>(text[pos]))) {
      nanos += (text[pos] - '0') * scale;
      scale /= 10;
      ++pos;
    }
    if (pos == start || pos - start > 9) return std::nullopt;
  }
  int offset_minutes = 0;
  if (pos < text.size() && text[pos] == 'Z') {
    ++pos;
  } else if (pos < text.size() && (text[pos] == '+' || text[pos] == '-')) {
    int oh, om;
    if (!digits(text, pos + 1, 2, oh) || pos + 3 >= text.size() || text[pos + 3] != ':' ||
        !digits(text, pos + 4, 2, om) || om > 59 || oh * 60 + om > 14 * 60) {  // FHIR: +-14:00
      return std::nullopt;
    }
    offset_minutes = (oh * 60 + om) * (text[pos] == '-' ? -1 : 1);
    pos += 6;
  } else {
    return std::nullopt;  // an offset is required: a bare local time is ambiguous
  }
  if (pos != text.size()) return std::nullopt;

  date_time dt;
  dt.text.assign(text);
  dt.local_date = *date;
  dt.utc_seconds = date->days() * 86400 + hh * 3600 + mm * 60 + ss - offset_minutes * 60;
  dt.nanos = nanos;
  return dt;
}

bool is_before(const date_time& a, const date_time& b) {
  return a.utc_seconds < b.utc_seconds || (a.utc_seconds == b.utc_seconds && a.nanos < b.nanos);
}

}  // namespace mappings
