// Escaping and encoding of search values.
#include "fhir/search_values.h"

namespace fhir {

std::string escape_search_value(std::string_view value) {
  std::string out;
  out.reserve(value.size() + 4);
  for (char c : value) {
    if (c == ',' || c == '|' || c == '$' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

std::string percent_encode(std::string_view text) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size() * 3 / 2);
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    const bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
                            c == '.' || c == '_' || c == '~';
    if (unreserved) {
      out += ch;
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 0x0f];
    }
  }
  return out;
}

std::string token_parameter(std::string_view name, std::string_view system, std::string_view code) {
  std::string out(name);
  out += '=';
  out += percent_encode(escape_search_value(system));
  out += '|';
  out += percent_encode(escape_search_value(code));
  return out;
}

}  // namespace fhir
