// Writes a FHIR R4 transaction Bundle entry by entry, straight into a json_writer.
// Every entry is keyed by a business identifier, so a resend finds instead of duplicating:
// create-if-absent (POST + ifNoneExist), upsert (conditional PUT) or remove (conditional DELETE).
// Entries reference each other through deterministic urn:uuid fullUrls.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "fhir/json_writer.h"

namespace fhir {

// The business key of a resource: its identifier (system + value), or for resource types
// without an identifier element (Provenance) a meta.tag with the same system and code.
struct resource_key {
  std::string_view type;  // "Encounter"
  std::string_view system;
  std::string value;
};

enum class write_mode {
  create_if_absent,  // POST with ifNoneExist: never touches an existing resource
  upsert,            // PUT Type?identifier=...: creates, or replaces the one match
  remove,            // DELETE Type?identifier=...: for resources with no entered-in-error status
};

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

  // Opens an entry and its resource, writing resourceType and the identifier (or meta.tag).
  // The caller writes the remaining members into out(), then calls end_entry().
  // For write_mode::remove no resource is written: call end_entry() straight away.
  // Returns the entry's fullUrl (empty for remove: nothing may refer to a deleted resource).
  std::string begin_entry(const resource_key& key, write_mode mode);
  void end_entry();
  // Copies a complete entry written elsewhere (its JSON object, request included).
  void append_entry(std::string_view entry_json);

  json_writer& out() { return out_; }

  // fullUrls of every resource written (not removed) so far, in order, for Provenance.target.
  const std::vector<std::string>& written() const { return written_; }
  std::size_t entry_count() const { return entries_; }

 private:
  json_writer& out_;
  std::vector<std::string> written_;
  std::size_t entries_ = 0;
  resource_key open_key_;
  write_mode open_mode_ = write_mode::create_if_absent;
  std::string query_;
};

}  // namespace fhir
