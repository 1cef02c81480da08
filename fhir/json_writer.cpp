// RapidJSON-backed implementation of fhir::json_writer.
#include "fhir/json_writer.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include <rapidjson/document.h>
#include <rapidjson/prettywriter.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace fhir {

struct json_writer::impl {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer{buffer};
};

json_writer::json_writer() : impl_(std::make_unique<impl>()) {}
json_writer::~json_writer() = default;

void json_writer::clear() {
  impl_->buffer.Clear();
  impl_->writer.Reset(impl_->buffer);
}

std::string_view json_writer::view() const {
  return {impl_->buffer.GetString(), impl_->buffer.GetSize()};
}

void json_writer::begin_object() { impl_->writer.StartObject(); }
void json_writer::end_object() { impl_->writer.EndObject(); }
void json_writer::begin_array() { impl_->writer.StartArray(); }
void json_writer::end_array() { impl_->writer.EndArray(); }
// Keys are FHIR element names: short ASCII words that never need escaping. Copying them quoted
// skips RapidJSON's per-character escape loop, a quarter of the mapping's cost; anything else takes
// the general path.
void json_writer::key(std::string_view k) {
  constexpr std::size_t max_fast = 62;
  const bool plain = k.size() <= max_fast && std::all_of(k.begin(), k.end(), [](char c) {
                       return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
                     });
  if (!plain) {
    impl_->writer.Key(k.data(), static_cast<rapidjson::SizeType>(k.size()));
    return;
  }
  char quoted[max_fast + 2];
  quoted[0] = '"';
  std::memcpy(quoted + 1, k.data(), k.size());
  quoted[k.size() + 1] = '"';
  impl_->writer.RawValue(quoted, k.size() + 2, rapidjson::kStringType);
}
void json_writer::string(std::string_view s) {
  impl_->writer.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
}
void json_writer::integer(std::int64_t n) { impl_->writer.Int64(n); }
void json_writer::boolean(bool b) { impl_->writer.Bool(b); }
void json_writer::raw(std::string_view json) {
  impl_->writer.RawValue(json.data(), json.size(), rapidjson::kObjectType);
}

void json_writer::number(double d) {
  constexpr double max_exact = 9007199254740992.0;  // 2^53
  if (std::isfinite(d) && std::floor(d) == d && std::fabs(d) < max_exact) {
    impl_->writer.Int64(static_cast<std::int64_t>(d));
  } else {
    impl_->writer.Double(d);
  }
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
