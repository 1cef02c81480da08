// Transaction-response parsing (RapidJSON stays in this file).
#include "fhir/transaction_response.h"

#include "fhir/json_parse.h"

namespace fhir {

std::optional<std::vector<entry_response>> read_transaction_response(std::string_view json) {
  rapidjson::Document doc;
  if (!detail::parse_json(doc, json).empty() || !doc.IsObject()) return std::nullopt;
  const auto type = doc.FindMember("type");
  if (type == doc.MemberEnd() || !type->value.IsString() ||
      std::string_view(type->value.GetString()) != "transaction-response") {
    return std::nullopt;
  }
  std::vector<entry_response> responses;
  const auto entries = doc.FindMember("entry");
  if (entries == doc.MemberEnd() || !entries->value.IsArray()) return responses;
  for (const auto& e : entries->value.GetArray()) {
    entry_response r;
    if (e.IsObject() && e.HasMember("response") && e["response"].IsObject()) {
      const auto& response = e["response"];
      if (response.HasMember("status") && response["status"].IsString()) r.status = response["status"].GetString();
      if (response.HasMember("location") && response["location"].IsString()) r.location = response["location"].GetString();
    }
    responses.push_back(std::move(r));
  }
  return responses;
}

namespace {

bool is_alnum(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Removes what may be a patient's data from free text: see summarize_operation_outcome.
std::string redact(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    // A quote opens only where a word cannot go on (so the apostrophe of "Patient's" does not),
    // and closes at the first matching quote not followed by a letter or digit.
    if ((c == '"' || c == '\'') && (i == 0 || !is_alnum(text[i - 1]))) {
      std::size_t close = text.find(c, i + 1);
      while (close != std::string_view::npos && close + 1 < text.size() && is_alnum(text[close + 1])) {
        close = text.find(c, close + 1);
      }
      if (close != std::string_view::npos) {
        out += "\u2026";
        i = close;
        continue;
      }
    }
    // A run of digits joined by - / . : (a date, a time, an identifier) with four digits or more.
    if (is_digit(c)) {
      std::size_t end = i, digits = 0;
      while (end < text.size() &&
             (is_digit(text[end]) || ((text[end] == '-' || text[end] == '/' || text[end] == '.' || text[end] == ':') &&
                                      end + 1 < text.size() && is_digit(text[end + 1])))) {
        digits += is_digit(text[end]) ? 1 : 0;
        ++end;
      }
      if (digits >= 4) {
        out += '#';
      } else {
        out.append(text.substr(i, end - i));
      }
      i = end - 1;
      continue;
    }
    out += (c == '\n' || c == '\r' || c == '\t') ? ' ' : c;
  }
  return out;
}

std::string text_of(const rapidjson::Value& object, const char* key) {
  if (!object.IsObject()) return {};
  const auto m = object.FindMember(key);
  return m != object.MemberEnd() && m->value.IsString() ? std::string(m->value.GetString(), m->value.GetStringLength())
                                                        : std::string();
}

}  // namespace

std::string summarize_operation_outcome(std::string_view json) {
  rapidjson::Document doc;
  if (!detail::parse_json(doc, json).empty() || !doc.IsObject() || text_of(doc, "resourceType") != "OperationOutcome") {
    return {};
  }
  const auto issues = doc.FindMember("issue");
  if (issues == doc.MemberEnd() || !issues->value.IsArray()) return {};
  std::string summary;
  int shown = 0;
  for (const auto& issue : issues->value.GetArray()) {
    if (shown == 3) {
      summary += "; and " + std::to_string(issues->value.Size() - 3) + " more";
      break;
    }
    std::string one = text_of(issue, "severity") + " " + text_of(issue, "code");
    std::string diagnostics = text_of(issue, "diagnostics");
    if (diagnostics.empty() && issue.IsObject() && issue.HasMember("details")) diagnostics = text_of(issue["details"], "text");
    if (!diagnostics.empty()) one += ": " + redact(diagnostics);
    if (issue.IsObject() && issue.HasMember("expression") && issue["expression"].IsArray() &&
        !issue["expression"].Empty() && issue["expression"][0].IsString()) {
      one += " (" + redact(issue["expression"][0].GetString()) + ")";
    }
    summary += (shown++ > 0 ? "; " : "") + one;
  }
  if (summary.size() > 300) {
    std::size_t cut = 297;
    while (cut > 0 && (static_cast<unsigned char>(summary[cut]) & 0xC0) == 0x80) --cut;  // whole UTF-8 characters
    summary = summary.substr(0, cut) + "...";
  }
  return summary;
}

}  // namespace fhir
