// Builds fhir::json_value trees from RapidJSON documents.
#include "fhir/json_value.h"

#include "fhir/json_parse.h"

namespace fhir {
namespace {

// Depth is bounded by detail::max_json_depth, so this recursion is bounded too.
void convert(const rapidjson::Value& in, json_value& out) {
  if (in.IsNull()) {
    out.type = json_value::kind::null;
  } else if (in.IsBool()) {
    out.type = json_value::kind::boolean;
    out.boolean = in.GetBool();
  } else if (in.IsNumber()) {
    out.type = json_value::kind::number;
    out.number = in.GetDouble();
    out.is_integer = in.IsInt64() || in.IsUint64();
  } else if (in.IsString()) {
    out.type = json_value::kind::string;
    out.text.assign(in.GetString(), in.GetStringLength());
  } else if (in.IsArray()) {
    out.type = json_value::kind::array;
    out.items.resize(in.Size());
    for (rapidjson::SizeType i = 0; i < in.Size(); ++i) convert(in[i], out.items[i]);
  } else {
    out.type = json_value::kind::object;
    out.members.reserve(in.MemberCount());
    for (const auto& m : in.GetObject()) {
      out.members.emplace_back(std::string(m.name.GetString(), m.name.GetStringLength()),
                               json_value{});
      convert(m.value, out.members.back().second);
    }
  }
}

}  // namespace

const json_value* json_value::find(std::string_view key) const {
  for (const auto& [name, value] : members) {
    if (name == key) return &value;
  }
  return nullptr;
}

std::string_view to_string(json_value::kind k) {
  switch (k) {
    case json_value::kind::null: return "null";
    case json_value::kind::boolean: return "boolean";
    case json_value::kind::number: return "number";
    case json_value::kind::string: return "string";
    case json_value::kind::array: return "array";
    case json_value::kind::object: return "object";
  }
  return "value";
}

std::string parse_json_value(std::string_view text, json_value& out, bool allow_comments) {
  rapidjson::Document doc;
  std::string error = detail::parse_json(doc, text, {.allow_comments = allow_comments});
  if (!error.empty()) return error;
  out = json_value{};
  convert(doc, out);
  return {};
}

}  // namespace fhir
