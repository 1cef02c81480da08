// Fuzz target: a record read and mapped to a FHIR R4 transaction Bundle, as `migraine-connector
// map` does it (connector/cli/map_command.cpp): the code tables and the mapper built once from the
// default configuration, then mappings::read_record and mappings::bundle_mapper::map, with
// fhir::write_operation_outcome for a rejected record (map --json). (fhir::pretty_json, for
// map --pretty, only reformats the mapper's own output and is left out, for speed.)
//
// Input: one record (a .json file), or, when that is not a valid record and the input has more
// than one line, an NDJSON file of records mapped in order as `map` does (each mapped record joins
// its patient's history; a follow-up whose procedure was not seen yet waits and is retried after
// each record of the same patient; stale revisions are no-ops). So the seeds of history plus
// record reach the flags that depend on earlier records (cycles, 90-day units, revisions).
//
// Neither the reader nor the mapper throws for any record. Properties checked besides the
// sanitizers: every Bundle and OperationOutcome written is well-formed JSON; a mapped outcome has
// entries and a Bundle, a waiting or stale one writes nothing.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "connector/intake/record_files.h"
#include "fhir/issue.h"
#include "fhir/json_writer.h"
#include "fuzz_support.h"
#include "mappings/bundle_mapper.h"
#include "mappings/patient_history.h"
#include "mappings/record_reader.h"

namespace {

const mappings::bundle_mapper& mapper() {
  static const mappings::bundle_mapper instance(fuzz::default_config().mapping, fuzz::shipped_code_tables());
  return instance;
}

void check_rejected(const mappings::read_result& result) {
  static fhir::json_writer out;  // reused, as the map command reuses its own
  out.clear();
  fhir::write_operation_outcome(out, result.problems);
  const std::string problem = fuzz::json_problem(out.view());
  FUZZ_CHECK(problem.empty(), "the OperationOutcome of a rejected record is JSON", problem);
}

// The `map` command's pathway over the records of one input.
class pathway {
 public:
  void offer(mappings::clinic_record record) {
    const std::string mrn = record.patient.mrn;
    if (!try_map(record)) {
      waiting_.push_back(std::move(record));
      return;
    }
    for (bool progress = true; progress;) {
      progress = false;
      for (auto it = waiting_.begin(); it != waiting_.end(); ++it) {
        if (it->patient.mrn == mrn && try_map(*it)) {
          waiting_.erase(it);
          progress = true;
          break;
        }
      }
    }
  }

 private:
  bool try_map(mappings::clinic_record& record) {
    mappings::patient_history& history = histories_[record.patient.mrn];
    const auto outcome = mapper().map(record, history, out_);
    if (outcome.result == mappings::mapping_result::waits) {
      FUZZ_CHECK(outcome.waits_for_record.has_value(), "a waiting outcome names the record it waits for");
      FUZZ_CHECK(out_.view().empty(), "a waiting record writes nothing");
      return false;
    }
    if (outcome.result == mappings::mapping_result::stale) {
      FUZZ_CHECK(out_.view().empty(), "a stale revision writes nothing");
      return true;
    }
    FUZZ_CHECK(outcome.entries > 0 && !out_.view().empty(), "a mapped record writes a Bundle");
    const std::string problem = fuzz::json_problem(out_.view());
    FUZZ_CHECK(problem.empty(), "the Bundle is JSON", problem);
    history.add(std::move(record));
    return true;
  }

  std::unordered_map<std::string, mappings::patient_history> histories_;
  std::vector<mappings::clinic_record> waiting_;
  fhir::json_writer out_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const mappings::code_tables& tables = fuzz::shipped_code_tables();
  const std::string_view input = fuzz::text_of(data, size);

  auto whole = mappings::read_record(input, tables);
  if (whole.record) {
    pathway().offer(std::move(*whole.record));
    return 0;
  }
  check_rejected(whole);
  const auto lines = connector::split_records(input, true);
  if (lines.size() < 2) return 0;
  pathway records;
  for (const auto& line : lines) {
    auto result = mappings::read_record(line.json, tables);
    if (!result.record) {
      check_rejected(result);
      continue;
    }
    records.offer(std::move(*result.record));
  }
  return 0;
}
