// Problems found in data, reported as values (never thrown) and as a FHIR OperationOutcome.
// Modelled on google/fhir's error reporter: a severity, an element path, a message.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "fhir/json_writer.h"

namespace fhir {

enum class severity { fatal, error, warning, information };

struct issue {
  severity level = severity::error;
  // FHIR OperationOutcome issue-type code: structure, required, value, invariant, business-rule...
  std::string_view type = "invalid";
  // Where in the input, e.g. "procedure.injections[3].units"; empty for the whole document.
  std::string path;
  // What is wrong; never contains patient data, only field names and limits.
  std::string message;
};

using issues = std::vector<issue>;

std::string_view to_string(severity s);

// Writes an OperationOutcome resource listing every issue.
void write_operation_outcome(json_writer& out, const issues& found);

}  // namespace fhir
