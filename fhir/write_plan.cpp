// Reading a plan back from its transaction encoding, ordering it, and rewriting its references
// (RapidJSON stays in this file).
#include "fhir/write_plan.h"

#include <algorithm>
#include <map>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "fhir/json_parse.h"
#include "fhir/search_values.h"

namespace fhir {
namespace {

std::string_view text_of(const rapidjson::Value& object, const char* key) {
  if (!object.IsObject()) return {};
  const auto m = object.FindMember(key);
  return m != object.MemberEnd() && m->value.IsString() ? std::string_view(m->value.GetString(), m->value.GetStringLength())
                                                        : std::string_view();
}

std::string to_json(const rapidjson::Value& v) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  v.Accept(writer);
  return {buffer.GetString(), buffer.GetSize()};
}

// Every "reference" string in document order (the walk is bounded by the parser's depth limit).
void collect_references(const rapidjson::Value& v, std::vector<std::string>& out) {
  if (v.IsObject()) {
    for (const auto& m : v.GetObject()) {
      if (std::string_view(m.name.GetString()) == "reference" && m.value.IsString()) {
        out.emplace_back(m.value.GetString(), m.value.GetStringLength());
      } else {
        collect_references(m.value, out);
      }
    }
  } else if (v.IsArray()) {
    for (const auto& item : v.GetArray()) collect_references(item, out);
  }
}

// The key the writer gave the resource: its (first) identifier, or for tag-keyed types the tag
// whose system is not the connector's extra tags'. The request's search says which system it is.
bool read_key(const rapidjson::Value& resource, std::string_view type, std::string_view search, planned_write& w) {
  const bool by_tag = is_matched_by_tag(type);
  const rapidjson::Value* candidates = nullptr;
  if (by_tag) {
    const auto meta = resource.FindMember("meta");
    if (meta == resource.MemberEnd() || !meta->value.IsObject()) return false;
    const auto tag = meta->value.FindMember("tag");
    if (tag == meta->value.MemberEnd()) return false;
    candidates = &tag->value;
  } else {
    const auto id = resource.FindMember("identifier");
    if (id == resource.MemberEnd()) return false;
    candidates = &id->value;
  }
  auto matches = [&](const rapidjson::Value& c) {
    const auto system = text_of(c, "system");
    const auto value = text_of(c, by_tag ? "code" : "value");
    if (system.empty() || value.empty()) return false;
    std::string q;
    append_token_parameter(q, by_tag ? "_tag" : "identifier", system, value);
    if (search.find(q) == std::string_view::npos) return false;
    w.key_system = std::string(system);
    w.key_value = std::string(value);
    return true;
  };
  if (candidates->IsObject()) return matches(*candidates);
  if (!candidates->IsArray()) return false;
  for (const auto& c : candidates->GetArray()) {
    if (matches(c)) return true;
  }
  return false;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decoding, then FHIR search unescaping, of one part of a token value.
std::optional<std::string> decode_search_part(std::string_view part) {
  std::string decoded;
  for (std::size_t i = 0; i < part.size(); ++i) {
    if (part[i] != '%') {
      decoded += part[i];
      continue;
    }
    if (i + 2 >= part.size()) return std::nullopt;
    const int hi = hex_digit(part[i + 1]), lo = hex_digit(part[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    decoded += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  std::string out;
  for (std::size_t i = 0; i < decoded.size(); ++i) {
    if (decoded[i] == '\\' && i + 1 < decoded.size()) ++i;
    out += decoded[i];
  }
  return out;
}

// Removes references `resolve` drops; returns true when `v` itself is left empty and should go.
bool rewrite(rapidjson::Value& v, rapidjson::Document::AllocatorType& alloc, const reference_resolver& resolve) {
  if (v.IsObject()) {
    for (auto m = v.MemberBegin(); m != v.MemberEnd();) {
      if (std::string_view(m->name.GetString()) == "reference" && m->value.IsString()) {
        const auto to = resolve(std::string_view(m->value.GetString(), m->value.GetStringLength()));
        if (!to) return true;  // the whole Reference goes, display and all
        m->value.SetString(to->data(), static_cast<rapidjson::SizeType>(to->size()), alloc);
        ++m;
      } else if (rewrite(m->value, alloc, resolve)) {
        m = v.EraseMember(m);
      } else {
        ++m;
      }
    }
    return v.ObjectEmpty();
  }
  if (v.IsArray()) {
    for (auto it = v.Begin(); it != v.End();) {
      it = rewrite(*it, alloc, resolve) ? v.Erase(it) : it + 1;
    }
    return v.Empty();
  }
  return false;
}

}  // namespace

std::optional<write_plan> read_plan(std::string_view transaction_bundle, std::string& error) {
  rapidjson::Document doc;
  if (auto e = detail::parse_json(doc, transaction_bundle); !e.empty()) {
    error = "the plan is not JSON: " + e;
    return std::nullopt;
  }
  if (!doc.IsObject() || text_of(doc, "resourceType") != "Bundle" || text_of(doc, "type") != "transaction" ||
      !doc.HasMember("entry") || !doc["entry"].IsArray()) {
    error = "the plan is not a transaction Bundle";
    return std::nullopt;
  }
  write_plan plan;
  if (doc.HasMember("identifier") && doc["identifier"].IsObject()) {
    plan.bundle_system = std::string(text_of(doc["identifier"], "system"));
    plan.bundle_value = std::string(text_of(doc["identifier"], "value"));
  }
  std::size_t n = 0;
  for (const auto& e : doc["entry"].GetArray()) {
    ++n;
    const std::string where = "the plan's entry " + std::to_string(n);
    if (!e.IsObject() || !e.HasMember("resource") || !e["resource"].IsObject() || !e.HasMember("request") ||
        !e["request"].IsObject()) {
      error = where + " has no resource or request";
      return std::nullopt;
    }
    const auto& resource = e["resource"];
    const auto& request = e["request"];
    planned_write w;
    w.type = std::string(text_of(resource, "resourceType"));
    w.full_url = std::string(text_of(e, "fullUrl"));
    const auto method = text_of(request, "method");
    std::string_view search;
    if (method == "POST") {
      w.mode = write_mode::create_if_absent;
      search = text_of(request, "ifNoneExist");
    } else if (method == "PUT") {
      w.mode = write_mode::upsert;
      const auto url = text_of(request, "url");
      search = url.substr(std::min(url.size(), url.find('?') + 1));
    } else {
      error = where + " has request method " + std::string(method) + ", not POST or PUT";
      return std::nullopt;
    }
    if (w.type.empty() || w.full_url.empty() || !read_key(resource, w.type, search, w)) {
      error = where + " (" + w.type + ") has no fullUrl or no business key";
      return std::nullopt;
    }
    collect_references(resource, w.references);
    w.resource = to_json(resource);
    plan.writes.push_back(std::move(w));
  }
  return plan;
}

void order_by_dependency(write_plan& plan) {
  std::map<std::string_view, std::size_t> at;
  for (std::size_t i = 0; i < plan.writes.size(); ++i) at[plan.writes[i].full_url] = i;
  // Depth-first, visiting writes in their order: each goes out after what it refers to.
  enum class mark { none, visiting, done };
  std::vector<mark> marks(plan.writes.size(), mark::none);
  std::vector<std::size_t> order;
  std::function<void(std::size_t)> visit = [&](std::size_t i) {
    if (marks[i] != mark::none) return;  // done, or on the path: a circle, whose edge back is not followed
    marks[i] = mark::visiting;
    for (const auto& r : plan.writes[i].references) {
      const auto it = at.find(r);
      if (it != at.end() && it->second != i) visit(it->second);
    }
    marks[i] = mark::done;
    order.push_back(i);
  };
  for (std::size_t i = 0; i < plan.writes.size(); ++i) visit(i);
  std::vector<planned_write> sorted;
  sorted.reserve(order.size());
  for (const std::size_t i : order) sorted.push_back(std::move(plan.writes[i]));
  plan.writes = std::move(sorted);
}

std::optional<conditional_target> read_conditional_reference(std::string_view reference) {
  const auto q = reference.find('?');
  if (q == std::string_view::npos || q == 0) return std::nullopt;
  conditional_target t;
  t.type = std::string(reference.substr(0, q));
  std::string_view query = reference.substr(q + 1);
  std::string_view name;
  if (query.rfind("identifier=", 0) == 0) {
    name = "identifier=";
  } else if (query.rfind("_tag=", 0) == 0) {
    name = "_tag=";
  } else {
    return std::nullopt;
  }
  query.remove_prefix(name.size());
  const auto bar = query.find('|');
  if (bar == std::string_view::npos || query.find('&') != std::string_view::npos) return std::nullopt;
  auto system = decode_search_part(query.substr(0, bar));
  auto value = decode_search_part(query.substr(bar + 1));
  if (!system || !value) return std::nullopt;
  t.system = std::move(*system);
  t.value = std::move(*value);
  return t;
}

std::string rewrite_references(std::string_view resource_json, const reference_resolver& resolve) {
  rapidjson::Document doc;
  if (!detail::parse_json(doc, resource_json).empty()) return std::string(resource_json);
  rewrite(doc, doc.GetAllocator(), resolve);
  return to_json(doc);
}

std::string with_id(std::string_view resource_json, std::string_view id) {
  rapidjson::Document doc;
  if (!detail::parse_json(doc, resource_json).empty() || !doc.IsObject()) return std::string(resource_json);
  doc.RemoveMember("id");
  rapidjson::Value v(id.data(), static_cast<rapidjson::SizeType>(id.size()), doc.GetAllocator());
  // resourceType first, then id, as FHIR writes them (order does not matter to a server).
  rapidjson::Document out;
  out.SetObject();
  for (auto& m : doc.GetObject()) {
    out.AddMember(rapidjson::Value(m.name, out.GetAllocator()), rapidjson::Value(m.value, out.GetAllocator()),
                  out.GetAllocator());
    if (std::string_view(m.name.GetString()) == "resourceType") {
      out.AddMember("id", rapidjson::Value(v, out.GetAllocator()), out.GetAllocator());
    }
  }
  return to_json(out);
}

}  // namespace fhir
