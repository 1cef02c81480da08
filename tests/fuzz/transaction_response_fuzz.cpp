// Fuzz target: what the connector reads of the EHR's answers (fhir/transaction_response.h):
//   fhir::read_transaction_response    the transaction-response Bundle of a delivered record; the
//                                      sync engine keeps each entry's "status location" with it
//                                      (connector/sync/sync_engine.cpp, what_the_ehr_made)
//   fhir::summarize_operation_outcome  the one-line summary of an error answer for the sync log
//                                      and the admin API
// Input: one HTTP response body from the EHR. Both functions run on every input, as an answer's
// kind is not known before it is read.
//
// Neither throws. Properties checked besides the sanitizers: the kept list of entry responses,
// written as the sync engine writes it, is JSON with one item per entry; the summary is at most
// 300 characters of printable ASCII (only value-set words, message codes and element paths: no
// free text of the EHR, which may quote patient data).
#include <cstddef>
#include <cstdint>
#include <string>

#include "fhir/json_value.h"
#include "fhir/json_writer.h"
#include "fhir/transaction_response.h"
#include "fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // The sync engine holds the body as a std::string.
  const std::string body(fuzz::text_of(data, size));

  if (const auto responses = fhir::read_transaction_response(body)) {
    fhir::json_writer out;
    out.begin_array();
    for (const auto& r : *responses) out.string(r.location.empty() ? r.status : r.status + " " + r.location);
    out.end_array();
    fhir::json_value kept;
    const std::string error = fhir::parse_json_value(out.view(), kept, false);
    FUZZ_CHECK(error.empty(), "the kept entry responses are JSON", error);
    FUZZ_CHECK(kept.is_array() && kept.items.size() == responses->size(), "one kept item per entry");
  }

  const std::string summary = fhir::summarize_operation_outcome(body);
  FUZZ_CHECK(summary.size() <= 300, "the summary is at most 300 characters", summary);
  for (const char c : summary) {
    FUZZ_CHECK(c >= 0x20 && c <= 0x7e, "the summary is printable ASCII", summary);
  }
  return 0;
}
