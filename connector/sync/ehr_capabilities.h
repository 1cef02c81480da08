// What the EHR says it supports (its CapabilityStatement, GET [base]/metadata), and the write
// strategy the connector chooses from it: how each record's resources reach the EHR.
//
//   capabilities  read from rest[mode=server]: the system interactions (transaction, batch) and,
//                 per resource type, its interactions, conditionalCreate, conditionalUpdate,
//                 versioning and whether `identifier` is a search parameter.
//   strategy      ehr.write_mode (auto | transaction | batch | single) resolved against them: the
//                 mode in force, and per resource type the connector writes whether it is sent,
//                 how, and if not, why not. status, the admin API and config-check show it.
//
// Pure: no I/O. A statement that lists a type without its interactions is read as "not stated",
// and the mode's needs are assumed for it (many full servers publish only the types); a type the
// statement does not list at all, when it lists types, is not taken.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace connector {

struct type_capabilities {
  bool interactions_stated = false;  // false: the statement names the type but not what it allows
  bool create = false, update = false, read = false, search = false;
  bool conditional_create = false, conditional_update = false;
  std::string versioning;  // no-version, versioned, versioned-update; empty when not stated
  bool identifier_search = false;
  bool tag_search = false;
  bool search_params_stated = false;  // false: searchParam not given; identifier search assumed  // _tag: how Provenance and AdverseEvent are found (fhir::is_matched_by_tag)
};

struct ehr_capabilities {
  bool transaction = false;
  bool batch = false;
  bool lists_types = false;  // the statement has rest.resource entries
  std::map<std::string, type_capabilities, std::less<>> types;
  std::string software;  // software.name and version, for status

  const type_capabilities* type(std::string_view name) const;
};

// Reads a CapabilityStatement. Returns nullopt and sets `error` (no server text beyond names)
// when it is not one.
std::optional<ehr_capabilities> read_capabilities(std::string_view json, std::string& error);

struct ehr_answer;
// The EHR's answer to GET /metadata read: nullopt and `error` ("/metadata: HTTP 500", "/metadata:
// connect: Connection refused", "the EHR's /metadata is not JSON…") when it holds no statement.
std::optional<ehr_capabilities> capabilities_of(const ehr_answer& answer, std::string& error);

enum class write_mode { automatic, transaction, batch, single };
std::optional<write_mode> write_mode_named(std::string_view name);  // ehr.write_mode
std::string_view name_of(write_mode mode);

// How the connector writes a resource type, keyed by its business identifier: created once if
// absent (POST with ifNoneExist), and for a record's own resources also updated by amendments
// and retractions (conditional PUT).
struct written_type {
  std::string_view type;
  bool upserted = false;  // also updated; false: created once, never changed
};
// Every type the mapper can write, in dependency order (referenced before referencing).
const std::vector<written_type>& written_types();

// How a resource of one type is written outside a transaction (single and batch modes), decided
// once from the capabilities and followed by connector/sync/plan_delivery.
enum class create_by {
  conditional,   // POST with If-None-Exist: the EHR finds an existing one itself
  search_first,  // GET Type?identifier=...; POST only when nothing is found
  ledger,        // POST, the intent and the answer kept in the ledger: nothing else can tell
  match_only,    // never created: found by identifier (the EHR's patients, ehr.patient match)
};
enum class update_by {
  conditional,  // PUT Type?identifier=...
  by_id,        // PUT Type/id, the id from the ledger or a search (If-Match when versioned)
  none,         // the EHR does not allow update: an amendment's change to it is left out
};

struct type_route {
  std::string type;
  bool sent = true;
  std::string how;  // "in the transaction, conditional create"; "not sent"
  std::string why;  // when not sent, or when an assumption was made
  // Outside a transaction:
  create_by create = create_by::conditional;
  update_by update = update_by::conditional;
  bool findable = false;   // GET Type?identifier= (or _tag=) works
  bool shared = false;     // Organization, Practitioner, Patient, Device: may be at the EHR already
  bool if_match = false;   // the EHR asks for versioned updates (versioning versioned-update)
};

// ehr.patient and ehr.practitioner: match means found by MRN / NPI and never created.
struct party_rules {
  bool match_patient = false;
  bool match_practitioner = false;
};

struct write_strategy {
  write_mode configured = write_mode::automatic;
  write_mode mode = write_mode::transaction;  // in force
  std::string why;                            // why this mode
  std::vector<type_route> types;
  // The connector cannot deliver this way yet (or at all): delivery waits, nothing is dead-lettered.
  bool deliverable = true;
  std::string not_deliverable_because;

  const type_route* route(std::string_view type) const;
};

write_strategy choose_strategy(const ehr_capabilities& ehr, write_mode configured, party_rules parties = {});

}  // namespace connector
