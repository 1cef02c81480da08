// A small owned JSON tree for the files read once at start-up (configuration, code tables).
// Hot paths (clinic records) use RapidJSON directly inside mappings/; this keeps it out of headers.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace fhir {

struct json_value {
  enum class kind { null, boolean, number, string, array, object };

  kind type = kind::null;
  bool boolean = false;
  double number = 0;
  bool is_integer = false;  // the number was written without fraction or exponent
  std::string text;
  std::vector<json_value> items;
  std::vector<std::pair<std::string, json_value>> members;

  bool is_object() const { return type == kind::object; }
  bool is_array() const { return type == kind::array; }
  bool is_string() const { return type == kind::string; }
  bool is_number() const { return type == kind::number; }
  bool is_bool() const { return type == kind::boolean; }
  // nullptr when this is not an object or has no such member.
  const json_value* find(std::string_view key) const;
};

std::string_view to_string(json_value::kind k);

// Parses text into out. Returns an empty string, or an error naming line and column.
std::string parse_json_value(std::string_view text, json_value& out, bool allow_comments);

}  // namespace fhir
