// `log`: the sync log, readably. Reads the rotated files too, oldest first; --follow keeps
// reading as the daemon writes, across rotations.
#include <sys/stat.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>

#include "connector/cli/commands.h"
#include "connector/config/config.h"
#include "connector/clock.h"
#include "connector/observe/sync_log.h"
#include "fhir/json_value.h"

namespace connector {
namespace {

struct log_filter {
  std::optional<std::string> record_id;
  std::optional<std::int64_t> since_ms;
  bool json = false;
};

std::string text_member(const fhir::json_value& v, std::string_view key) {
  const auto* m = v.find(key);
  return m != nullptr && m->is_string() ? m->text : std::string();
}

long long number_member(const fhir::json_value& v, std::string_view key) {
  const auto* m = v.find(key);
  return m != nullptr && m->is_number() ? static_cast<long long>(m->number) : 0;
}

// One event on one line: time, event, record, attempt, HTTP status, latency, correlation id,
// patient hash (shortened), then the reason and the EHR's summary.
std::string readable(const fhir::json_value& e) {
  std::string time = text_member(e, "time");
  if (time.size() > 10) time[10] = ' ';
  char head[96];
  std::snprintf(head, sizeof head, "%s  %-15s", time.c_str(), text_member(e, "event").c_str());
  std::string line = head;
  if (const std::string id = text_member(e, "record_id"); !id.empty()) {
    line += " " + id;
    std::string about = text_member(e, "record_type");
    if (const auto rev = number_member(e, "revision"); rev > 0) about += (about.empty() ? "r" : " r") + std::to_string(rev);
    if (const auto attempt = number_member(e, "attempt"); attempt > 0) about += ", attempt " + std::to_string(attempt);
    if (!about.empty()) line += " (" + about + ")";
  }
  if (const auto status = number_member(e, "http_status"); status > 0) line += "  HTTP " + std::to_string(status);
  if (e.find("latency_ms") != nullptr) line += "  " + std::to_string(number_member(e, "latency_ms")) + " ms";
  if (const std::string channel = text_member(e, "channel"); !channel.empty()) line += "  via " + channel;
  if (const std::string id = text_member(e, "correlation_id"); !id.empty()) line += "  [" + id + "]";
  if (const std::string patient = text_member(e, "patient"); !patient.empty()) line += "  patient " + patient.substr(0, 8);
  if (const std::string detail = text_member(e, "detail"); !detail.empty()) line += "  - " + detail;
  if (const std::string ehr = text_member(e, "ehr_error"); !ehr.empty()) line += "  EHR: " + ehr;
  return line;
}

void show(std::string_view line, const log_filter& filter) {
  if (line.empty()) return;
  fhir::json_value e;
  if (!fhir::parse_json_value(line, e, false).empty() || !e.is_object()) return;  // a torn line after a crash
  if (filter.record_id && text_member(e, "record_id") != *filter.record_id) return;
  if (filter.since_ms) {
    const auto at = parse_time_or_age(text_member(e, "time"), 0);
    if (!at || *at < *filter.since_ms) return;
  }
  if (filter.json) {
    std::printf("%.*s\n", static_cast<int>(line.size()), line.data());
  } else {
    std::printf("%s\n", printable(readable(e)).c_str());
  }
}

// Prints the whole lines of `text`; returns how many bytes it used (a partial last line waits).
std::size_t show_lines(const std::string& text, const log_filter& filter) {
  std::size_t start = 0;
  for (std::size_t end; (end = text.find('\n', start)) != std::string::npos; start = end + 1) {
    show(std::string_view(text).substr(start, end - start), filter);
  }
  return start;
}

std::atomic<bool> stop_following{false};
extern "C" void stop_follow(int) { stop_following = true; }

}  // namespace

int run_log(const std::vector<std::string>& args) {
  std::optional<std::string> config_path;
  log_filter filter;
  bool follow = false, bad = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const bool has_value = i + 1 < args.size();
    if (args[i] == "--config" && has_value) {
      config_path = args[++i];
    } else if (args[i] == "--record" && has_value) {
      filter.record_id = args[++i];
    } else if (args[i] == "--since" && has_value) {
      filter.since_ms = parse_time_or_age(args[++i], now_ms());
      if (!filter.since_ms) {
        std::fprintf(stderr, "migraine-connector: --since takes a UTC time (2026-11-24T10:00Z, 2026-11-24) or an age (90s, 15m, 2h, 3d)\n");
        return exit_usage;
      }
    } else if (args[i] == "--follow" || args[i] == "-f") {
      follow = true;
    } else if (args[i] == "--json") {
      filter.json = true;
    } else {
      bad = true;
    }
  }
  if (bad) {
    std::fprintf(stderr, "usage: migraine-connector log [--config FILE] [--follow] [--record ID] [--since TIME] [--json]\n");
    return exit_usage;
  }
  const connector_config config = load_config(config_path);
  const log_config& settings = config.log;
  for (const auto& file : log_files_oldest_first(settings)) {
    std::ifstream in(file, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    show_lines(text.str() + "\n", filter);
  }
  std::fflush(stdout);
  if (!follow) return exit_ok;

  // Follow: read what is appended; when the file is rotated away, finish it and start on the new one.
  std::signal(SIGINT, stop_follow);
  std::signal(SIGTERM, stop_follow);
  std::ifstream current(settings.path, std::ios::binary);
  current.seekg(0, std::ios::end);
  struct stat followed {};
  ::stat(settings.path.c_str(), &followed);
  std::string pending;
  while (!stop_following) {
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    char chunk[65536];
    current.clear();
    while (current.read(chunk, sizeof chunk) || current.gcount() > 0) {
      pending.append(chunk, static_cast<std::size_t>(current.gcount()));
    }
    pending.erase(0, show_lines(pending, filter));
    std::fflush(stdout);
    struct stat now {};
    if (::stat(settings.path.c_str(), &now) == 0 && (now.st_ino != followed.st_ino || now.st_dev != followed.st_dev)) {
      current.clear();  // what reached the old file since the last read, then the new file
      while (current.read(chunk, sizeof chunk) || current.gcount() > 0) {
        pending.append(chunk, static_cast<std::size_t>(current.gcount()));
      }
      pending.erase(0, show_lines(pending, filter));
      current = std::ifstream(settings.path, std::ios::binary);
      followed = now;
    }
  }
  return exit_ok;
}

}  // namespace connector
