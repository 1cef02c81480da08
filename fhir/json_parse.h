// Safe JSON parsing for untrusted input, shared by the .cpp files of fhir/ and mappings/.
// Internal header: it exposes RapidJSON, so include it only from .cpp files.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <rapidjson/document.h>

namespace fhir::detail {

// Deeper nesting than this is refused: no clinic record or configuration needs it, and it keeps
// every later walk of the document (and its stack) bounded.
inline constexpr unsigned max_json_depth = 64;

struct parse_options {
  // Configuration files (JSONC) may carry // and /* */ comments and trailing commas.
  bool allow_comments = false;
  // Refuse invalid UTF-8 while parsing. The record reader checks it per field instead, to name
  // the field at fault.
  bool validate_encoding = true;
};

// Parses `text` into `doc` without recursion and with a depth limit.
// Returns an empty string on success, else a message naming line and column.
std::string parse_json(rapidjson::Document& doc, std::string_view text, parse_options options = {});

// 1-based line and column of a byte offset, for error messages.
struct text_position {
  std::size_t line;
  std::size_t column;
};
text_position position_of(std::string_view text, std::size_t offset);

}  // namespace fhir::detail
