// Helpers shared by the commands: argument parsing, naming records in messages, the delivery
// report.
#include "connector/cli/commands.h"

#include <algorithm>
#include <cstdio>

#include "connector/config/config.h"
#include "connector/sync/sync_engine.h"

namespace connector {

std::string printable(std::string_view text) {
  static const char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    // C1 controls are U+0080..U+009F, in UTF-8 0xC2 0x80..0x9F.
    const bool c1 = c == 0xc2 && i + 1 < text.size() && static_cast<unsigned char>(text[i + 1]) >= 0x80 &&
                    static_cast<unsigned char>(text[i + 1]) <= 0x9f;
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c < 0x20 || c == 0x7f) {
      out += "\\x";
      out += digits[c >> 4];
      out += digits[c & 15];
    } else if (c1) {
      const unsigned char next = static_cast<unsigned char>(text[++i]);
      out += "\\u00";
      out += digits[next >> 4];
      out += digits[next & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

// "file:record_id" for messages; NDJSON records without a readable id are named by line.
std::string record_label(const record_file& file, const record_text& text,
                         const mappings::read_result& result) {
  std::string label = file.path + ":";
  if (!result.record_id.empty()) return label + result.record_id;
  return label + "line " + std::to_string(text.line);
}

void print_problems(std::FILE* to, const std::string& label, const fhir::issues& problems) {
  for (const auto& p : problems) {
    if (p.path.empty()) {
      std::fprintf(to, "%s: %s\n", printable(label).c_str(), printable(p.message).c_str());
    } else {
      std::fprintf(to, "%s: %s: %s\n", printable(label).c_str(), printable(p.path).c_str(), printable(p.message).c_str());
    }
  }
}

std::string duration_text(std::int64_t ms) {
  const std::int64_t minutes = ms / 60000;
  if (minutes < 1) return std::to_string(ms / 1000) + " s";
  if (minutes < 120) return std::to_string(minutes) + " min";
  return std::to_string(minutes / 60) + " h " + std::to_string(minutes % 60) + " min";
}

std::optional<store_options> parse_store_args(const std::vector<std::string>& args, bool takes_files) {
  store_options o;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--config" && i + 1 < args.size()) {
      o.config_path = args[++i];
    } else if (args[i] == "--json" && !takes_files) {
      o.json = true;
    } else if (!args[i].empty() && args[i][0] != '-' && takes_files) {
      o.files.push_back(args[i]);
    } else {
      return std::nullopt;
    }
  }
  if (takes_files && o.files.empty()) return std::nullopt;
  return o;
}

void print_report(const sync_report& report, std::int64_t waiting, std::int64_t handshakes) {
  std::printf("delivered %d, retries scheduled %d, dead letters %d, held %d; %lld still waiting\n",
              report.delivered, report.retries_scheduled, report.dead, report.held,
              static_cast<long long>(waiting));
  std::printf("TLS handshakes: %lld\n", static_cast<long long>(handshakes));
  if (report.claims_recovered > 0) {
    std::printf("taken back from processes that died or stalled: %d\n", report.claims_recovered);
  }
  if (report.claims_lost > 0) std::printf("answers not recorded (claim taken over): %d\n", report.claims_lost);
  if (report.auth_fault) {
    std::printf("EHR: authentication fault, delivery paused: %s\n", report.last_error->c_str());
  } else if (report.write_refused) {
    std::printf("EHR: refuses records written this way, delivery paused: %s\n", report.last_error->c_str());
  } else if (report.ehr_unreachable) {
    std::printf("EHR: unreachable: %s\n", report.last_error->c_str());
  } else if (report.last_error) {
    std::printf("last error: %s\n", report.last_error->c_str());
  }
}

std::optional<std::string> config_only(const std::vector<std::string>& args, const std::vector<std::string>& flags,
                                       std::vector<std::string>& seen) {
  std::optional<std::string> config_path;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--config" && i + 1 < args.size()) {
      config_path = args[++i];
    } else if (std::find(flags.begin(), flags.end(), args[i]) != flags.end()) {
      seen.push_back(args[i]);
    } else {
      throw config_error("unexpected argument '" + args[i] + "' (try --help)");
    }
  }
  return config_path;
}

}  // namespace connector
