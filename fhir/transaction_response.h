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
// "severity code: diagnostics (expression)", at most 300 characters. The EHR may quote the
// offending value in its diagnostics, and that value may be patient data: anything in quotes
// becomes "…", and every run of digits (joined by - / . :) with four digits or more, such as a
// date or an identifier, becomes "#".
// Empty when the text is not an OperationOutcome.
std::string summarize_operation_outcome(std::string_view json);

}  // namespace fhir
