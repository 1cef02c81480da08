// Writes a FHIR R4 transaction Bundle entry by entry, straight into a json_writer.
// Every entry is keyed by a business identifier, so a resend finds instead of duplicating:
// create-if-absent (POST + ifNoneExist) or upsert (conditional PUT). Nothing is ever deleted:
// strict servers refuse to delete a resource others (an earlier Provenance) still reference.
// Entries reference each other through deterministic urn:uuid fullUrls.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fhir/json_writer.h"

namespace fhir {

// The business key of a resource: its identifier (system + value). Types R4 gives no identifier
// search parameter (AdverseEvent; Provenance, which has no identifier at all) are matched on a
// meta.tag with the same system and code instead.
struct resource_key {
  std::string_view type;  // "Encounter"
  std::string_view system;
  std::string value;
};

enum class write_mode {
  create_if_absent,  // POST with ifNoneExist: never touches an existing resource
  upsert,            // PUT Type?identifier=...: creates, or replaces the one match
};

struct coding;

// True for the types whose key is a meta.tag (searched with _tag), false for identifier.
bool is_matched_by_tag(std::string_view type);

// A deterministic, RFC 4122-shaped urn:uuid derived from the key: the same record always yields
// the same fullUrls, and distinct keys yield distinct ones.
std::string urn_uuid_for(const resource_key& key);

// "Procedure?identifier=system|value": a reference the server resolves inside the transaction.
std::string conditional_reference(const resource_key& key);

class transaction_writer {
 public:
  explicit transaction_writer(json_writer& out) : out_(out) {}

  // Opens the Bundle; its own identifier lets the EHR and the sync log trace it.
  void begin_bundle(std::string_view identifier_system, std::string_view identifier_value);
  void end_bundle();

  // Opens an entry and its resource, writing resourceType, meta (the profile it claims, its tags)
  // and identifier as the type needs; `extra_tag` adds a tag of the caller's. The caller writes
  // the remaining members into out(), then calls end_entry(). Returns the entry's fullUrl.
  std::string begin_entry(const resource_key& key, write_mode mode, const coding* extra_tag = nullptr,
                          std::string_view profile = {});
  void end_entry();
  // Copies a complete entry written elsewhere (its JSON object, request included).
  void append_entry(std::string_view entry_json);

  json_writer& out() { return out_; }

  // fullUrls of every resource written so far, in order, for Provenance.target.
  const std::vector<std::string>& written() const { return written_; }
  std::size_t entry_count() const { return entries_; }

 private:
  json_writer& out_;
  std::vector<std::string> written_;
  std::size_t entries_ = 0;
  std::string_view open_type_;
  write_mode open_mode_ = write_mode::create_if_absent;
  std::string query_;  // the open entry's search: "identifier=<system>|<value>", encoded
};

}  // namespace fhir
