// Writing, rotating and reading the sync log.
#include "connector/observe/sync_log.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "connector/config/config.h"
#include "fhir/json_writer.h"

namespace connector {
namespace {

// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm), and back.
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

void civil_from_days(std::int64_t z, int& y, unsigned& m, unsigned& d) {
  z += 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  d = doy - (153 * mp + 2) / 5 + 1;
  m = mp < 10 ? mp + 3 : mp - 9;
  y = static_cast<int>(static_cast<std::int64_t>(yoe) + era * 400 + (m <= 2));
}

bool read_int(std::string_view text, std::size_t at, std::size_t width, int& out) {
  if (at + width > text.size()) return false;
  const char* first = text.data() + at;
  const auto [ptr, ec] = std::from_chars(first, first + width, out);
  return ec == std::errc() && ptr == first + width;
}

std::string read_whole(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return std::move(text).str();
}

}  // namespace

std::string utc_text(std::int64_t ms) {
  const std::int64_t seconds = ms >= 0 ? ms / 1000 : (ms - 999) / 1000;
  const std::int64_t days = seconds >= 0 ? seconds / 86400 : (seconds - 86399) / 86400;
  const std::int64_t in_day = seconds - days * 86400;
  int y;
  unsigned m, d;
  civil_from_days(days, y, m, d);
  char text[32];
  std::snprintf(text, sizeof text, "%04d-%02u-%02uT%02d:%02d:%02d.%03dZ", y, m, d, static_cast<int>(in_day / 3600),
                static_cast<int>(in_day / 60 % 60), static_cast<int>(in_day % 60),
                static_cast<int>(ms - seconds * 1000));
  return text;
}

std::optional<std::int64_t> parse_time_or_age(std::string_view text, std::int64_t now_ms) {
  if (text.size() >= 2 && text.size() <= 8 && text.find('-') == std::string_view::npos) {
    std::int64_t n = 0;
    const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size() - 1, n);
    if (ec != std::errc() || ptr != text.data() + text.size() - 1 || n < 0) return std::nullopt;
    const char unit = text.back();
    const std::int64_t scale = unit == 's' ? 1000 : unit == 'm' ? 60000 : unit == 'h' ? 3600000 : unit == 'd' ? 86400000 : 0;
    if (scale == 0) return std::nullopt;
    return now_ms - n * scale;
  }
  int y, mo, d, h = 0, mi = 0, s = 0, milli = 0;
  if (!read_int(text, 0, 4, y) || text.size() < 10 || text[4] != '-' || !read_int(text, 5, 2, mo) ||
      text[7] != '-' || !read_int(text, 8, 2, d) || mo < 1 || mo > 12 || d < 1 || d > 31) {
    return std::nullopt;
  }
  std::string_view rest = text.substr(10);
  if (!rest.empty()) {
    if ((rest[0] != 'T' && rest[0] != ' ') || !read_int(rest, 1, 2, h) || rest.size() < 6 || rest[3] != ':' ||
        !read_int(rest, 4, 2, mi)) {
      return std::nullopt;
    }
    rest.remove_prefix(6);
    if (!rest.empty() && rest[0] == ':') {
      if (!read_int(rest, 1, 2, s)) return std::nullopt;
      rest.remove_prefix(3);
      if (!rest.empty() && rest[0] == '.') {
        std::size_t digits = 1;
        while (digits < rest.size() && rest[digits] >= '0' && rest[digits] <= '9') ++digits;
        if (digits < 2) return std::nullopt;
        std::string frac(rest.substr(1, std::min<std::size_t>(digits - 1, 3)));
        frac.resize(3, '0');
        milli = std::stoi(frac);
        rest.remove_prefix(digits);
      }
    }
    if (rest != "Z") return std::nullopt;  // the log is UTC; a zone offset would be a guess
    if (h > 23 || mi > 59 || s > 60) return std::nullopt;
  }
  const std::int64_t days = days_from_civil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d));
  int check_y;
  unsigned check_m, check_d;
  civil_from_days(days, check_y, check_m, check_d);
  if (check_m != static_cast<unsigned>(mo) || check_d != static_cast<unsigned>(d)) return std::nullopt;  // 2026-02-30
  return ((days * 24 + h) * 60 + mi) * 60000 + s * 1000 + milli;
}

std::string event_json(const sync_event& e) {
  fhir::json_writer out;
  out.begin_object();
  out.member("time", utc_text(e.time_ms));
  out.member("event", e.name);
  auto text = [&](std::string_view key, const std::string& value) {
    if (!value.empty()) out.member(key, value);
  };
  auto number = [&](std::string_view key, std::int64_t value) {
    if (value != 0) out.member(key, value);
  };
  text("record_id", e.record_id);
  text("record_type", e.record_type);
  number("revision", e.revision);
  number("attempt", e.attempt);
  number("http_status", e.http_status);
  if (e.latency_ms) out.member("latency_ms", *e.latency_ms);
  text("correlation_id", e.correlation_id);
  text("ehr_error", e.ehr_error);
  text("patient", e.patient);
  text("channel", e.channel);
  text("detail", e.detail);
  out.end_object();
  return std::string(out.view());
}

sync_log::sync_log(log_config settings) : settings_(std::move(settings)) {
  fd_ = ::open(settings_.path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd_ < 0) {
    const int err = errno;
    failing_ = true;
    std::fprintf(stderr, "migraine-connector: warning: the sync log %s cannot be opened for appending (%s); "
                 "delivery goes on, and the log resumes once the file can be written\n",
                 settings_.path.c_str(), std::strerror(err));
  }
}

bool sync_log::failing() const {
  std::lock_guard lock(mutex_);
  return failing_;
}

// Warns once when the log stops taking lines and once when it takes them again.
void sync_log::note_write(bool ok) {
  if (!ok) {
    ++failed_writes_;
    ++lost_since_failing_;
    if (!failing_) {
      const int err = errno;
      std::fprintf(stderr, "migraine-connector: warning: the sync log %s cannot be written (%s); delivery goes on\n",
                   settings_.path.c_str(), std::strerror(err));
    }
    failing_ = true;
  } else if (failing_) {
    std::fprintf(stderr, "migraine-connector: the sync log %s is written again (%lld line(s) lost meanwhile)\n",
                 settings_.path.c_str(), static_cast<long long>(lost_since_failing_));
    failing_ = false;
    lost_since_failing_ = 0;
  }
}

sync_log::~sync_log() {
  if (fd_ >= 0) ::close(fd_);
}

std::int64_t sync_log::failed_writes() const {
  std::lock_guard lock(mutex_);
  return failed_writes_;
}

// Another process (or this one) may have rotated the file: write to the one now at the path.
void sync_log::reopen_if_rotated() {
  struct stat at_path {}, ours {};
  if (fd_ >= 0 && ::stat(settings_.path.c_str(), &at_path) == 0 && ::fstat(fd_, &ours) == 0 &&
      at_path.st_ino == ours.st_ino && at_path.st_dev == ours.st_dev) {
    return;
  }
  if (fd_ >= 0) ::close(fd_);
  fd_ = ::open(settings_.path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

// PATH.(N-1) -> PATH.N ... PATH -> PATH.1, under an exclusive lock on the current file so two
// processes never rotate the same file twice.
void sync_log::rotate() {
  if (::flock(fd_, LOCK_EX) != 0) return;
  struct stat at_path {}, ours {};
  const bool still_ours = ::stat(settings_.path.c_str(), &at_path) == 0 && ::fstat(fd_, &ours) == 0 &&
                          at_path.st_ino == ours.st_ino && at_path.st_size >= settings_.max_bytes / 2;
  if (still_ours) {
    const std::string& p = settings_.path;
    std::error_code ignored;
    std::filesystem::remove(p + "." + std::to_string(settings_.keep_files), ignored);
    for (int i = settings_.keep_files - 1; i >= 1; --i) {
      std::filesystem::rename(p + "." + std::to_string(i), p + "." + std::to_string(i + 1), ignored);
    }
    if (settings_.keep_files > 0) {
      std::filesystem::rename(p, p + ".1", ignored);
    } else {
      std::filesystem::remove(p, ignored);
    }
  }
  ::flock(fd_, LOCK_UN);
  reopen_if_rotated();
}

void sync_log::emit(const sync_event& e) {
  std::string line = event_json(e);
  line += '\n';
  std::lock_guard lock(mutex_);
  reopen_if_rotated();
  struct stat ours {};
  if (fd_ >= 0 && ::fstat(fd_, &ours) == 0 && ours.st_size > 0 &&
      ours.st_size + static_cast<std::int64_t>(line.size()) > settings_.max_bytes) {
    rotate();
  }
  // O_APPEND: one write per line keeps lines whole when several processes append.
  note_write(fd_ >= 0 && ::write(fd_, line.data(), line.size()) == static_cast<ssize_t>(line.size()));
}

std::vector<std::string> log_files_oldest_first(const log_config& settings) {
  std::vector<std::string> files;
  std::error_code ec;
  for (int i = settings.keep_files; i >= 1; --i) {
    const std::string rotated = settings.path + "." + std::to_string(i);
    if (std::filesystem::exists(rotated, ec)) files.push_back(rotated);
  }
  if (std::filesystem::exists(settings.path, ec)) files.push_back(settings.path);
  return files;
}

std::vector<std::string> recent_event_lines(const log_config& settings, std::size_t limit,
                                            std::string_view record_id) {
  std::string needle;
  if (!record_id.empty()) {
    fhir::json_writer quoted;
    quoted.string(record_id);
    needle = "\"record_id\":" + std::string(quoted.view());
  }
  std::vector<std::string> lines;
  const auto files = log_files_oldest_first(settings);
  for (auto file = files.rbegin(); file != files.rend() && lines.size() < limit; ++file) {
    const std::string content = read_whole(*file);
    std::size_t end = content.size();  // one past the line looked at
    while (end > 0 && lines.size() < limit) {
      if (content[end - 1] == '\n') {
        --end;
        continue;
      }
      const std::size_t newline = content.rfind('\n', end - 1);
      const std::size_t from = newline == std::string::npos ? 0 : newline + 1;
      const std::string_view line(content.data() + from, end - from);
      if (line.front() == '{' && line.back() == '}' &&
          (needle.empty() || line.find(needle) != std::string_view::npos)) {
        lines.emplace_back(line);
      }
      end = from;
    }
  }
  return lines;
}

}  // namespace connector
