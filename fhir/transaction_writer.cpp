// Transaction Bundle writing and the deterministic keys behind it.
#include "fhir/transaction_writer.h"

#include "fhir/datatypes.h"
#include "fhir/search_values.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>

namespace fhir {
namespace {

// Two 64-bit FNV-1a hashes with different seeds, each followed by a MurmurHash3 finaliser: cheap,
// well mixed, and stable across builds. Both run in one pass over the parts.
struct hash128 {
  std::uint64_t hi, lo;
};

std::uint64_t finalise(std::uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

constexpr std::uint64_t fnv_prime = 0x100000001b3ULL;

// The running state of both hashes, after one more part.
hash128 mix_in(hash128 h, std::string_view part) {
  for (const unsigned char c : part) {
    h.hi = (h.hi ^ c) * fnv_prime;
    h.lo = (h.lo ^ c) * fnv_prime;
  }
  h.hi = (h.hi ^ 0xff) * fnv_prime;  // separator, so ("ab","c") and ("a","bc") differ
  h.lo = (h.lo ^ 0xff) * fnv_prime;
  return h;
}

constexpr hash128 hash_seeds = {0xcbf29ce484222325ULL, 0x84222325cbf29ce4ULL};

// "00".."ff" for every byte.
constexpr std::array<std::array<char, 2>, 256> hex_pairs = [] {
  constexpr char hex[] = "0123456789abcdef";
  std::array<std::array<char, 2>, 256> t{};
  for (std::size_t i = 0; i < 256; ++i) t[i] = {hex[i >> 4], hex[i & 0x0f]};
  return t;
}();

std::string urn_from(hash128 state) {
  const std::uint64_t hi = finalise(state.hi), lo = finalise(state.lo);
  std::array<unsigned char, 16> b{};
  for (int i = 0; i < 8; ++i) {
    b[i] = static_cast<unsigned char>(hi >> (56 - 8 * i));
    b[8 + i] = static_cast<unsigned char>(lo >> (56 - 8 * i));
  }
  b[6] = static_cast<unsigned char>((b[6] & 0x0f) | 0x80);  // version 8: custom, name-derived
  b[8] = static_cast<unsigned char>((b[8] & 0x3f) | 0x80);  // RFC 4122 variant
  // urn:uuid:xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx
  std::string urn = "urn:uuid:________-____-____-____-____________";
  static constexpr int at[16] = {9, 11, 13, 15, 18, 20, 23, 25, 28, 30, 33, 35, 37, 39, 41, 43};
  for (int i = 0; i < 16; ++i) std::memcpy(urn.data() + at[i], hex_pairs[b[i]].data(), 2);
  return urn;
}

// The hash state after a key's type and system, which a bundle repeats in nearly every entry:
// the last few are kept, per thread.
hash128 type_and_system_state(std::string_view type, std::string_view system) {
  struct cached {
    std::string type, system;
    hash128 state;
  };
  constexpr std::size_t slots = 16;
  thread_local std::array<cached, slots> cache;
  thread_local std::size_t used = 0, next = 0;
  for (std::size_t i = 0; i < used; ++i) {
    if (cache[i].type == type && cache[i].system == system) return cache[i].state;
  }
  cached& c = cache[next];
  next = (next + 1) % slots;
  used = std::max(used, next == 0 ? slots : next);
  c.type.assign(type);
  c.system.assign(system);
  c.state = mix_in(mix_in(hash_seeds, type), system);
  return c.state;
}

// R4 resource types whose identifier is 0..1 rather than 0..* (among those with an identifier).
bool has_single_identifier(std::string_view type) {
  return type == "AdverseEvent" || type == "Bundle" || type == "Composition" ||
         type == "QuestionnaireResponse";
}

std::string_view token_name(std::string_view type) { return is_matched_by_tag(type) ? "_tag" : "identifier"; }

void append_query(std::string& q, const resource_key& key) {
  append_token_parameter(q, token_name(key.type), key.system, key.value);
}

}  // namespace

bool is_matched_by_tag(std::string_view type) {
  return type == "Provenance" || type == "AdverseEvent";
}

std::string urn_uuid_for(const resource_key& key) {
  return urn_from(mix_in(type_and_system_state(key.type, key.system), key.value));
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
                                            const coding* extra_tag, std::string_view profile) {
  open_type_ = key.type;
  open_mode_ = mode;
  query_.clear();
  append_query(query_, key);  // for the request, written by end_entry
  ++entries_;
  written_.push_back(urn_uuid_for(key));
  out_.begin_object();
  out_.member("fullUrl", written_.back());
  out_.key("resource");
  out_.begin_object();
  out_.member("resourceType", key.type);

  const bool by_tag = is_matched_by_tag(key.type);
  if (by_tag || extra_tag != nullptr || !profile.empty()) {
    out_.key("meta");
    out_.begin_object();
    if (!profile.empty()) {
      out_.key("profile");
      out_.begin_array();
      out_.string(profile);
      out_.end_array();
    }
    if (by_tag || extra_tag != nullptr) {
      out_.key("tag");
      out_.begin_array();
      if (by_tag) write_coding(out_, {std::string(key.system), key.value, ""});
      if (extra_tag != nullptr) write_coding(out_, *extra_tag);
      out_.end_array();
    }
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
  switch (open_mode_) {
    case write_mode::create_if_absent:
      out_.member("method", "POST");
      out_.member("url", open_type_);
      out_.member("ifNoneExist", query_);
      break;
    case write_mode::upsert:
      out_.member("method", "PUT");
      query_.insert(0, 1, '?');
      query_.insert(0, open_type_);
      out_.member("url", query_);
      break;
  }
  out_.end_object();
  out_.end_object();  // the entry
}

}  // namespace fhir
