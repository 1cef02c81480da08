// fhir::json_writer: compact JSON straight into one growing buffer.
//
// Written by hand rather than over RapidJSON's Writer, which copies raw values and keys one
// character at a time and checks its state on every call: writing is most of what mapping costs,
// and the connector writes mostly pre-rendered fragments, element names and short strings.
// RapidJSON is still used for parsing, for pretty_json and for its shortest-round-trip doubles.
#include "fhir/json_writer.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <rapidjson/document.h>
#include <rapidjson/internal/dtoa.h>
#include <rapidjson/prettywriter.h>
#include <rapidjson/stringbuffer.h>

namespace fhir {
namespace {

// 0: copied as it is; otherwise the character after the backslash ('u': \u00XX).
constexpr std::array<char, 256> escape_table = [] {
  std::array<char, 256> t{};
  for (int c = 0; c < 0x20; ++c) t[static_cast<std::size_t>(c)] = 'u';
  t['\b'] = 'b';
  t['\f'] = 'f';
  t['\n'] = 'n';
  t['\r'] = 'r';
  t['\t'] = 't';
  t['"'] = '"';
  t['\\'] = '\\';
  return t;
}();

#if defined(__SSE2__)
// Sixteen bytes at a time: whether any is below 0x20, '"' or '\\'.
constexpr std::ptrdiff_t block = 16;
bool block_needs_escape(const char* p) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m128i control = _mm_cmpeq_epi8(_mm_max_epu8(v, _mm_set1_epi8(0x1F)), _mm_set1_epi8(0x1F));
  const __m128i quote = _mm_cmpeq_epi8(v, _mm_set1_epi8('"'));
  const __m128i backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'));
  return _mm_movemask_epi8(_mm_or_si128(control, _mm_or_si128(quote, backslash))) != 0;
}
#else
// Eight bytes at a time, with the classic "has a zero byte" and "has a byte less than n" word
// tricks (exact about whether, not about which).
constexpr std::ptrdiff_t block = 8;
bool block_needs_escape(const char* p) {
  std::uint64_t w;
  std::memcpy(&w, p, 8);
  constexpr std::uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
  const std::uint64_t below_space = (w - ones * 0x20) & ~w & highs;
  const std::uint64_t q = w ^ (ones * '"');
  const std::uint64_t b = w ^ (ones * '\\');
  const std::uint64_t quote = (q - ones) & ~q & highs;
  const std::uint64_t backslash = (b - ones) & ~b & highs;
  return (below_space | quote | backslash) != 0;
}
#endif

}  // namespace

void json_writer::grow(std::size_t n) {
  text_.resize(std::max(text_.size() * 2, used_ + n + 4096));
}

void json_writer::quoted(std::string_view s) {
  // The worst case, every byte \u00XX, is reserved once.
  char* out = reserve(s.size() * 6 + 2);
  char* const start = out;
  *out++ = '"';
  const char* p = s.data();
  const char* const end = p + s.size();
  bool verbatim = true;  // nothing escaped so far: out is the input shifted by the opening quote
  for (;;) {
    // A block at a time while none of its bytes needs escaping (most strings: references, URLs,
    // codes), then one byte, escaped if it must be.
    while (end - p >= block) {
      if (block_needs_escape(p)) break;
      std::memcpy(out, p, block);
      p += block;
      out += block;
    }
    if (p == end) break;
    // A tail shorter than a block, of a string copied verbatim so far: the input's last block,
    // written over the end of the output, which already holds the same bytes.
    const auto tail = static_cast<std::size_t>(end - p);
    if (verbatim && tail < block && s.size() >= block && !block_needs_escape(end - block)) {
      std::memcpy(out - (block - tail), end - block, block);
      out += tail;
      break;
    }
    const auto c = static_cast<unsigned char>(*p++);
    const char e = escape_table[c];
    if (e == 0) {
      *out++ = static_cast<char>(c);
      continue;
    }
    verbatim = false;
    *out++ = '\\';
    *out++ = e;
    if (e == 'u') {
      constexpr char hex[] = "0123456789ABCDEF";
      *out++ = '0';
      *out++ = '0';
      *out++ = hex[c >> 4];
      *out++ = hex[c & 0xF];
    }
  }
  *out++ = '"';
  used_ += static_cast<std::size_t>(out - start);
}

void json_writer::integer(std::int64_t n) {
  separate();
  char* out = reserve(24);
  used_ += static_cast<std::size_t>(std::to_chars(out, out + 24, n).ptr - out);
}

void json_writer::number(double d) {
  constexpr double max_exact = 9007199254740992.0;  // 2^53
  if (std::isfinite(d) && std::floor(d) == d && std::fabs(d) < max_exact) {
    integer(static_cast<std::int64_t>(d));
    return;
  }
  separate();
  if (!std::isfinite(d)) {
    put("null", 4);  // JSON has no NaN or infinity; the mappers never write one
    return;
  }
  // Shortest text that reads back as the same double, as RapidJSON writes it ("1e21", "0.1").
  char* out = reserve(32);
  used_ += static_cast<std::size_t>(rapidjson::internal::dtoa(d, out) - out);
}

std::string pretty_json(std::string_view compact) {
  rapidjson::Document doc;
  doc.Parse(compact.data(), compact.size());
  if (doc.HasParseError()) return std::string(compact);
  rapidjson::StringBuffer buffer;
  rapidjson::PrettyWriter<rapidjson::StringBuffer> writer(buffer);
  writer.SetIndent(' ', 2);
  doc.Accept(writer);
  return {buffer.GetString(), buffer.GetSize()};
}

}  // namespace fhir
