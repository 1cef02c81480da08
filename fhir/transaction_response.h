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
};

// The entries' responses in order, or nullopt when the text is not a transaction-response Bundle.
std::optional<std::vector<entry_response>> read_transaction_response(std::string_view json);

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
