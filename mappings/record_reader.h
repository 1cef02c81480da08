// Reads one clinic record (a .json file's content or one NDJSON line) into a clinic_record,
// reporting every problem with its field path ("procedure.injections[3].units: must be > 0").
// A record with any problem is rejected whole: nothing of it may be mapped or sent.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "fhir/issue.h"
#include "mappings/clinic_record.h"
#include "mappings/code_tables.h"

namespace mappings {

struct reader_limits {
  // A clinic record is a few kilobytes; anything this large is a wrong file, not a record.
  std::size_t max_record_bytes = 1024 * 1024;
};

struct read_result {
  std::optional<clinic_record> record;  // set only when problems is empty
  fhir::issues problems;
  std::string record_id;    // as far as it could be read, for messages ("" if unreadable)
  std::string record_type;  // "consultation", "procedure", "follow_up", or "record" if unknown
};

read_result read_record(std::string_view json, const code_tables& tables, reader_limits limits = {});

// Normalises an NDC to its 11-digit form: "0023-3921-02" -> "00023392102".
// Accepts the 10-digit dashed forms of the carton (4-4-2, 5-3-2, 5-4-1) and 11 bare digits.
std::optional<std::string> normalize_ndc(std::string_view ndc);

// NPI check digit: Luhn over the prefix 80840 followed by the 10 digits.
bool is_valid_npi(std::string_view npi);

}  // namespace mappings
