// Reading an EHR's transaction-response Bundle: what each entry became on the server.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fhir {

struct entry_response {
  std::string status;    // "201 Created", "200 OK"
  std::string location;  // "Encounter/123/_history/1"; may be empty
  std::string etag;      // W/"1"; may be empty
  std::string outcome;   // a failed batch entry's OperationOutcome (JSON); may be empty
};

// The entries' responses in order, or nullopt when the text is not a transaction-response Bundle
// (or, with `batch`, a batch-response Bundle).
std::optional<std::vector<entry_response>> read_transaction_response(std::string_view json, bool batch = false);

// Where a server says a resource is: "Observation/12/_history/3", relative or absolute, or just
// "Observation/12". Empty parts when it is not one.
struct resource_location {
  std::string type, id, version;
};
resource_location read_location(std::string_view location);

// A searchset's matches of `type` (entries with search.mode "match", or no mode): their ids and
// versions. nullopt when the text is not a searchset Bundle.
struct search_match {
  std::string id, version;
};
std::optional<std::vector<search_match>> read_search_matches(std::string_view json, std::string_view type);

// The version in an ETag: W/"3" -> 3.
std::string version_of_etag(std::string_view etag);

}  // namespace fhir

namespace fhir {

// An OperationOutcome in one line for IT staff and the sync log: up to three issues as
// "severity code [MESSAGE_CODE] at element.path", at most 300 characters. Only words from FHIR's
// value sets, machine message codes and element paths (cut before any value, e.g. where(...))
// are kept; diagnostics and details.text are left out, because an EHR may quote the patient's
// name, birth date or identifiers in them and no redaction of free text is safe. The full
// OperationOutcome stays with the dead letter in the store. Empty when not an OperationOutcome.
std::string summarize_operation_outcome(std::string_view json);

}  // namespace fhir
