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

// Bounds of the contract's open-ended numbers: generous for any real record, small enough that no
// arithmetic on them (weeks x 7, vials x vial units, sums of doses) can overflow. The JSON Schema
// says the same.
namespace limits {
inline constexpr int max_weeks = 520;             // a preventive trial: ten years
inline constexpr int max_months = 1200;           // months at the current frequency: a lifetime
inline constexpr int max_sites = 100;             // injection sites on one line
inline constexpr int max_cycle = 1000;            // treatment cycles (one every 12 weeks: 230 years)
inline constexpr int max_vials = 20;
inline constexpr double max_units_per_line = 1000;  // far above any dose: flags, not this, judge doses
inline constexpr double max_diluent_ml = 100;
inline constexpr double max_units_discarded = 4000;  // 20 vials of 200 U
}  // namespace limits

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
