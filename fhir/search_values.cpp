// Escaping and encoding of search values.
#include "fhir/search_values.h"

#include <array>

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

namespace {

constexpr std::array<bool, 256> unreserved_table = [] {
  std::array<bool, 256> t{};
  for (int c = 0; c < 256; ++c) {
    t[static_cast<std::size_t>(c)] = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                                     c == '-' || c == '.' || c == '_' || c == '~';
  }
  return t;
}();

constexpr bool unreserved(unsigned char c) { return unreserved_table[c]; }

}  // namespace

// In one pass and no temporary: the hot path, since every entry of every Bundle has a
// conditional URL.
void append_search_value(std::string& out, std::string_view value) {
  static constexpr char hex[] = "0123456789ABCDEF";
  // Encoded into a buffer on the stack (the worst case: every byte escaped and encoded, six
  // characters), then appended once.
  constexpr std::size_t stack_bytes = 64;
  for (std::size_t at = 0; at < value.size(); at += stack_bytes) {
    const std::string_view part = value.substr(at, stack_bytes);
    char buffer[stack_bytes * 6];
    char* p = buffer;
    for (char ch : part) {
      const auto c = static_cast<unsigned char>(ch);
      if (unreserved(c)) {
        *p++ = ch;
        continue;
      }
      if (c == ',' || c == '|' || c == '$' || c == '\\') {  // the escaping backslash, encoded
        *p++ = '%';
        *p++ = '5';
        *p++ = 'C';
      }
      *p++ = '%';
      *p++ = hex[c >> 4];
      *p++ = hex[c & 0x0f];
    }
    out.append(buffer, static_cast<std::size_t>(p - buffer));
  }
}

namespace {

// The systems of a transaction are a handful of long URLs, each encoded in every entry: the last
// few encodings are kept, per thread.
std::string_view encoded_system(std::string_view system) {
  struct cached {
    std::string system, encoded;
  };
  constexpr std::size_t slots = 8;
  thread_local std::array<cached, slots> cache;
  thread_local std::size_t next = 0;
  for (const auto& c : cache) {
    if (c.system == system && !c.encoded.empty()) return c.encoded;
  }
  cached& c = cache[next];
  next = (next + 1) % slots;
  c.system.assign(system);
  c.encoded.clear();
  append_search_value(c.encoded, system);
  return c.encoded;
}

}  // namespace

void append_token_parameter(std::string& out, std::string_view name, std::string_view system,
                            std::string_view code) {
  const std::string_view encoded = system.empty() ? std::string_view() : encoded_system(system);
  out.reserve(out.size() + name.size() + 2 + encoded.size() + code.size() * 3 / 2);
  out += name;
  out += '=';
  out += encoded;
  out += '|';
  append_search_value(out, code);
}

std::string token_parameter(std::string_view name, std::string_view system, std::string_view code) {
  std::string out;
  append_token_parameter(out, name, system, code);
  return out;
}

}  // namespace fhir
