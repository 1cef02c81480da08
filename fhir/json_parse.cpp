// Depth-limited JSON parsing with readable error positions.
#include "fhir/json_parse.h"

#include <rapidjson/error/en.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>

namespace fhir::detail {
namespace {

// Forwards SAX events to the document's builder, refusing to go deeper than max_json_depth.
template <typename Handler>
struct depth_limit {
  Handler& next;
  unsigned depth = 0;
  bool too_deep = false;

  bool Null() { return next.Null(); }
  bool Bool(bool b) { return next.Bool(b); }
  bool Int(int i) { return next.Int(i); }
  bool Uint(unsigned u) { return next.Uint(u); }
  bool Int64(int64_t i) { return next.Int64(i); }
  bool Uint64(uint64_t u) { return next.Uint64(u); }
  bool Double(double d) { return next.Double(d); }
  bool RawNumber(const char* s, rapidjson::SizeType n, bool copy) { return next.RawNumber(s, n, copy); }
  bool String(const char* s, rapidjson::SizeType n, bool copy) { return next.String(s, n, copy); }
  bool Key(const char* s, rapidjson::SizeType n, bool copy) { return next.Key(s, n, copy); }
  bool StartObject() { return enter() && next.StartObject(); }
  bool EndObject(rapidjson::SizeType n) { --depth; return next.EndObject(n); }
  bool StartArray() { return enter() && next.StartArray(); }
  bool EndArray(rapidjson::SizeType n) { --depth; return next.EndArray(n); }

  bool enter() {
    if (++depth > max_json_depth) {
      too_deep = true;
      return false;
    }
    return true;
  }
};

template <unsigned Flags>
std::string parse_with(rapidjson::Document& doc, std::string_view text) {
  rapidjson::Reader reader;
  rapidjson::ParseResult result;
  bool too_deep = false;
  auto generator = [&](rapidjson::Document& builder) {
    rapidjson::MemoryStream bytes(text.data(), text.size());
    depth_limit<rapidjson::Document> limited{builder};
    result = reader.Parse<Flags>(bytes, limited);
    too_deep = limited.too_deep;
    return !result.IsError();
  };
  doc.Populate(generator);
  if (!result.IsError()) return {};
  // The recursive parser has consumed the bracket when it asks to descend; name the bracket itself.
  std::size_t offset = result.Offset();
  if (too_deep && offset > 0) --offset;
  auto where = position_of(text, offset);
  std::string message = "malformed JSON at line " + std::to_string(where.line) + ", column " +
                        std::to_string(where.column) + ": ";
  if (too_deep) {
    message += "nested deeper than " + std::to_string(max_json_depth) + " levels";
  } else {
    message += rapidjson::GetParseError_En(result.Code());
  }
  return message;
}

}  // namespace

std::string parse_json(rapidjson::Document& doc, std::string_view text, parse_options options) {
  // RapidJSON's recursive parser, which is the faster one: the depth limit above stops it before
  // it recurses deeper than max_json_depth (it calls StartObject / StartArray before descending),
  // so hostile nesting cannot exhaust the stack.
  constexpr unsigned base = rapidjson::kParseDefaultFlags;
  constexpr unsigned checked = base | rapidjson::kParseValidateEncodingFlag;
  constexpr unsigned jsonc = rapidjson::kParseCommentsFlag | rapidjson::kParseTrailingCommasFlag;
  if (options.allow_comments) {
    return options.validate_encoding ? parse_with<checked | jsonc>(doc, text) : parse_with<base | jsonc>(doc, text);
  }
  return options.validate_encoding ? parse_with<checked>(doc, text) : parse_with<base>(doc, text);
}

text_position position_of(std::string_view text, std::size_t offset) {
  text_position p{1, 1};
  if (offset > text.size()) offset = text.size();
  for (std::size_t i = 0; i < offset; ++i) {
    if (text[i] == '\n') {
      ++p.line;
      p.column = 1;
    } else {
      ++p.column;
    }
  }
  return p;
}

}  // namespace fhir::detail
