// Transaction-response parsing (RapidJSON stays in this file).
#include "fhir/transaction_response.h"

#include <cstdint>
#include <string>

#include "fhir/json_parse.h"

#include <algorithm>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "fhir/utf8.h"

namespace fhir {
namespace {


std::string string_member(const rapidjson::Value& object, const char* key) {
  const auto m = object.FindMember(key);
  if (m == object.MemberEnd() || !m->value.IsString()) return {};
  return as_utf8(std::string_view(m->value.GetString(), m->value.GetStringLength()));
}

}  // namespace

std::optional<std::vector<entry_response>> read_transaction_response(std::string_view json, bool batch) {
  rapidjson::Document doc;
  if (!detail::parse_json(doc, json).empty() || !doc.IsObject()) return std::nullopt;
  const auto type = doc.FindMember("type");
  if (type == doc.MemberEnd() || !type->value.IsString() ||
      std::string_view(type->value.GetString()) != (batch ? "batch-response" : "transaction-response")) {
    return std::nullopt;
  }
  std::vector<entry_response> responses;
  const auto entries = doc.FindMember("entry");
  if (entries == doc.MemberEnd() || !entries->value.IsArray()) return responses;
  for (const auto& e : entries->value.GetArray()) {
    entry_response r;
    if (e.IsObject() && e.HasMember("response") && e["response"].IsObject()) {
      const auto& response = e["response"];
      r.status = string_member(response, "status");
      r.location = string_member(response, "location");
      r.etag = string_member(response, "etag");
      if (response.HasMember("outcome") && response["outcome"].IsObject()) {
        rapidjson::StringBuffer buffer;
        rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
        response["outcome"].Accept(writer);
        r.outcome = as_utf8(std::string_view(buffer.GetString(), buffer.GetSize()));
      }
    }
    responses.push_back(std::move(r));
  }
  return responses;
}

resource_location read_location(std::string_view location) {
  // Absolute or relative: the last "Type/id[/_history/vid]" of the path.
  std::vector<std::string_view> parts;
  std::size_t at = 0;
  while (at <= location.size()) {
    const auto slash = location.find('/', at);
    const auto end = slash == std::string_view::npos ? location.size() : slash;
    parts.push_back(location.substr(at, end - at));
    at = end + 1;
  }
  resource_location r;
  const auto history = std::find(parts.begin(), parts.end(), std::string_view("_history"));
  const std::ptrdiff_t h = history - parts.begin();
  const bool versioned = history != parts.end() && h >= 2 && h + 1 < static_cast<std::ptrdiff_t>(parts.size());
  const std::ptrdiff_t id_at = versioned ? h - 1 : static_cast<std::ptrdiff_t>(parts.size()) - 1;
  if (id_at < 1 || parts[id_at].empty() || parts[id_at - 1].empty()) return r;
  r.type = std::string(parts[id_at - 1]);
  r.id = std::string(parts[id_at]);
  if (versioned) r.version = std::string(parts[h + 1]);
  return r;
}

std::optional<std::vector<search_match>> read_search_matches(std::string_view json, std::string_view type) {
  rapidjson::Document doc;
  if (!detail::parse_json(doc, json).empty() || !doc.IsObject()) return std::nullopt;
  if (string_member(doc, "resourceType") != "Bundle" || string_member(doc, "type") != "searchset") return std::nullopt;
  std::vector<search_match> matches;
  const auto entries = doc.FindMember("entry");
  if (entries == doc.MemberEnd() || !entries->value.IsArray()) return matches;
  for (const auto& e : entries->value.GetArray()) {
    if (!e.IsObject() || !e.HasMember("resource") || !e["resource"].IsObject()) continue;
    if (e.HasMember("search") && e["search"].IsObject()) {
      const auto mode = string_member(e["search"], "mode");
      if (!mode.empty() && mode != "match") continue;
    }
    const auto& r = e["resource"];
    if (string_member(r, "resourceType") != type) continue;
    search_match m;
    m.id = string_member(r, "id");
    if (r.HasMember("meta") && r["meta"].IsObject()) m.version = string_member(r["meta"], "versionId");
    if (!m.id.empty()) matches.push_back(std::move(m));
  }
  return matches;
}

std::string version_of_etag(std::string_view etag) {
  if (etag.rfind("W/", 0) == 0) etag.remove_prefix(2);
  if (etag.size() >= 2 && etag.front() == '"' && etag.back() == '"') etag = etag.substr(1, etag.size() - 2);
  return std::string(etag);
}

namespace {

// What an OperationOutcome may say in the log: only words from FHIR's own value sets and element
// paths. Free text (diagnostics, details.text) is left out: an EHR may quote a patient's name,
// birth date or identifier in it, quoted or not, and no redaction of free text is safe.
constexpr std::string_view severities[] = {"fatal", "error", "warning", "information"};
constexpr std::string_view issue_types[] = {
    "invalid", "structure", "required", "value", "invariant", "security", "login", "unknown", "expired",
    "forbidden", "suppressed", "processing", "not-supported", "duplicate", "multiple-matches", "not-found",
    "deleted", "too-long", "code-invalid", "extension", "too-costly", "business-rule", "conflict", "transient",
    "lock-error", "no-store", "exception", "timeout", "incomplete", "throttled", "informational"};

template <std::size_t N>
std::string_view allowed(std::string_view word, const std::string_view (&words)[N], std::string_view otherwise) {
  for (auto w : words) {
    if (w == word) return w;
  }
  return otherwise;
}

std::string_view text_of(const rapidjson::Value& object, const char* key) {
  if (!object.IsObject()) return {};
  const auto m = object.FindMember(key);
  return m != object.MemberEnd() && m->value.IsString() ? std::string_view(m->value.GetString(), m->value.GetStringLength())
                                                        : std::string_view();
}

// An element path up to the first character that could start a value: "Patient.name[0].given[0]"
// stays whole, "Patient.identifier.where(value='123')" becomes "Patient.identifier.where".
std::string path_only(std::string_view expression) {
  std::string out;
  for (char c : expression) {
    const bool path_char = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                           c == '_' || c == '[' || c == ']';
    if (!path_char || out.size() == 120) break;
    out += c;
  }
  return out;
}

// A machine code from details.coding (e.g. MSG_PARAM_INVALID): letters, digits, _ - . only.
std::string message_code(const rapidjson::Value& issue) {
  if (!issue.IsObject() || !issue.HasMember("details") || !issue["details"].IsObject()) return {};
  const auto& details = issue["details"];
  if (!details.HasMember("coding") || !details["coding"].IsArray() || details["coding"].Empty()) return {};
  const std::string_view code = text_of(details["coding"][0], "code");
  if (code.empty() || code.size() > 40) return {};
  for (char c : code) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                    c == '-' || c == '.';
    if (!ok) return {};
  }
  return std::string(code);
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
    std::string one = std::string(allowed(text_of(issue, "severity"), severities, "unknown-severity")) + " " +
                      std::string(allowed(text_of(issue, "code"), issue_types, "other"));
    if (const std::string code = message_code(issue); !code.empty()) one += " " + code;
    std::string where;
    if (issue.IsObject() && issue.HasMember("expression") && issue["expression"].IsArray() &&
        !issue["expression"].Empty() && issue["expression"][0].IsString()) {
      where = path_only(issue["expression"][0].GetString());
    } else if (issue.IsObject() && issue.HasMember("location") && issue["location"].IsArray() &&
               !issue["location"].Empty() && issue["location"][0].IsString()) {
      where = path_only(issue["location"][0].GetString());
    }
    if (!where.empty()) one += " at " + where;
    summary += (shown++ > 0 ? "; " : "") + one;
  }
  if (summary.size() > 300) summary = summary.substr(0, 297) + "...";  // ASCII only: a safe cut
  return summary;
}

}  // namespace fhir
