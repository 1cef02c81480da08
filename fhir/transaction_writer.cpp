// Transaction Bundle writing and the deterministic keys behind it.
#include "fhir/transaction_writer.h"

#include "fhir/datatypes.h"
#include "fhir/search_values.h"

#include <array>
#include <cstdint>

namespace fhir {
namespace {

// 64-bit FNV-1a followed by a MurmurHash3 finaliser: cheap, well mixed, and stable across builds.
std::uint64_t hash64(std::string_view part1, std::string_view part2, std::string_view part3,
                     std::uint64_t seed) {
  std::uint64_t h = seed;
  auto mix_in = [&h](std::string_view s) {
    for (unsigned char c : s) {
      h ^= c;
      h *= 0x100000001b3ULL;
    }
    h ^= 0xff;  // separator, so ("ab","c") and ("a","bc") differ
    h *= 0x100000001b3ULL;
  };
  mix_in(part1);
  mix_in(part2);
  mix_in(part3);
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

// R4 resource types whose identifier is 0..1 rather than 0..* (among those with an identifier).
bool has_single_identifier(std::string_view type) {
  return type == "AdverseEvent" || type == "Bundle" || type == "Composition" ||
         type == "QuestionnaireResponse";
}

void append_query(std::string& q, const resource_key& key) {
  q += token_parameter(is_matched_by_tag(key.type) ? "_tag" : "identifier", key.system, key.value);
}

}  // namespace

bool is_matched_by_tag(std::string_view type) {
  return type == "Provenance" || type == "AdverseEvent";
}

std::string urn_uuid_for(const resource_key& key) {
  const std::uint64_t hi = hash64(key.type, key.system, key.value, 0xcbf29ce484222325ULL);
  const std::uint64_t lo = hash64(key.type, key.system, key.value, 0x84222325cbf29ce4ULL);
  std::array<unsigned char, 16> b{};
  for (int i = 0; i < 8; ++i) {
    b[i] = static_cast<unsigned char>(hi >> (56 - 8 * i));
    b[8 + i] = static_cast<unsigned char>(lo >> (56 - 8 * i));
  }
  b[6] = static_cast<unsigned char>((b[6] & 0x0f) | 0x80);  // version 8: custom, name-derived
  b[8] = static_cast<unsigned char>((b[8] & 0x3f) | 0x80);  // RFC 4122 variant
  static constexpr char hex[] = "0123456789abcdef";
  std::string urn = "urn:uuid:";
  urn.reserve(45);
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) urn += '-';
    urn += hex[b[i] >> 4];
    urn += hex[b[i] & 0x0f];
  }
  return urn;
}

std::string conditional_reference(const resource_key& key) {
  std::string ref(key.type);
  ref += '?';
  append_query(ref, key);
  return ref;
}

void transaction_writer::begin_bundle(std::string_view identifier_system,
                                      std::string_view identifier_value) {
  out_.begin_object();
  out_.member("resourceType", "Bundle");
  out_.key("identifier");
  out_.begin_object();
  out_.member("system", identifier_system);
  out_.member("value", identifier_value);
  out_.end_object();
  out_.member("type", "transaction");
  out_.key("entry");
  out_.begin_array();
}

void transaction_writer::end_bundle() {
  out_.end_array();
  out_.end_object();
}

std::string transaction_writer::begin_entry(const resource_key& key, write_mode mode,
                                            const coding* extra_tag) {
  open_key_ = key;
  open_mode_ = mode;
  ++entries_;
  written_.push_back(urn_uuid_for(key));
  out_.begin_object();
  out_.member("fullUrl", written_.back());
  out_.key("resource");
  out_.begin_object();
  out_.member("resourceType", key.type);

  const bool by_tag = is_matched_by_tag(key.type);
  if (by_tag || extra_tag != nullptr) {
    out_.key("meta");
    out_.begin_object();
    out_.key("tag");
    out_.begin_array();
    if (by_tag) write_coding(out_, {std::string(key.system), key.value, ""});
    if (extra_tag != nullptr) write_coding(out_, *extra_tag);
    out_.end_array();
    out_.end_object();
  }
  if (key.type != "Provenance") {  // the one type here with no identifier element at all
    const bool single = has_single_identifier(key.type);
    out_.key("identifier");
    if (!single) out_.begin_array();
    out_.begin_object();
    out_.member("system", key.system);
    out_.member("value", key.value);
    out_.end_object();
    if (!single) out_.end_array();
  }
  return written_.back();
}

void transaction_writer::append_entry(std::string_view entry_json) {
  ++entries_;
  out_.raw(entry_json);
}

void transaction_writer::end_entry() {
  out_.end_object();  // the resource
  out_.key("request");
  out_.begin_object();
  query_.clear();
  switch (open_mode_) {
    case write_mode::create_if_absent:
      out_.member("method", "POST");
      out_.member("url", open_key_.type);
      append_query(query_, open_key_);
      out_.member("ifNoneExist", query_);
      break;
    case write_mode::upsert:
      out_.member("method", "PUT");
      query_ = conditional_reference(open_key_);
      out_.member("url", query_);
      break;
  }
  out_.end_object();
  out_.end_object();  // the entry
}

}  // namespace fhir
