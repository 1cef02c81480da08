// Fuzz target: the clinic record reader (mappings/record_reader.h), the first code every record
// from the inbox, the ingest API or the `map`/`ingest` commands goes through. Input: one record's
// JSON text, as one .json file or one NDJSON line holds it.
//
// read_record reports every problem as an issue and throws nothing. Properties checked besides
// the sanitizers: a record is returned exactly when there is no problem; record_type is one of the
// four documented words and, with a record, its type; record_id is the record's.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz_support.h"
#include "mappings/record_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const mappings::code_tables& tables = fuzz::shipped_code_tables();
  const auto result = mappings::read_record(fuzz::text_of(data, size), tables);

  FUZZ_CHECK(result.record.has_value() == result.problems.empty(), "a record exactly when there is no problem");
  const std::string_view type = result.record_type;
  FUZZ_CHECK(type == "consultation" || type == "procedure" || type == "follow_up" || type == "record",
             "record_type", type);
  if (result.record) {
    FUZZ_CHECK(type == result.record->type_name(), "record_type of an accepted record", type);
    FUZZ_CHECK(!result.record_id.empty() && result.record_id == result.record->record_id,
               "record_id of an accepted record", result.record_id);
  }
  return 0;
}
