// OperationOutcome rendering of data issues.
#include "fhir/issue.h"

namespace fhir {

std::string_view to_string(severity s) {
  switch (s) {
    case severity::fatal: return "fatal";
    case severity::error: return "error";
    case severity::warning: return "warning";
    case severity::information: return "information";
  }
  return "error";
}

void write_operation_outcome(json_writer& out, const issues& found) {
  out.begin_object();
  out.member("resourceType", "OperationOutcome");
  out.key("issue");
  out.begin_array();
  for (const auto& i : found) {
    out.begin_object();
    out.member("severity", to_string(i.level));
    out.member("code", i.type);
    out.member("diagnostics", i.message);
    if (!i.path.empty()) {
      out.key("expression");
      out.begin_array();
      out.string(i.path);
      out.end_array();
    }
    out.end_object();
  }
  out.end_array();
  out.end_object();
}

}  // namespace fhir
