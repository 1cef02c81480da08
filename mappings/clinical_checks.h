// The clinical checks the clinic expects (domain reference, "Flag"): the connector records what
// happened and flags anomalies without holding them back. Pure functions of record and history.
// The assessments behind the flags are exported too, because the mapping writes them as
// Observations (eligibility, response to treatment).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mappings/clinic_record.h"
#include "mappings/code_tables.h"
#include "mappings/patient_history.h"

namespace mappings {

// DetectedIssue.severity codes.
enum class flag_severity { high, moderate, low };
std::string_view to_string(flag_severity s);

// A resource of the record's own bundle that a flag is about, named by type and role
// ("MedicationAdministration", "administration/temporalis-left").
struct implicated_resource {
  std::string_view type;
  std::string role;
};

struct clinical_flag {
  std::string_view rule;  // code-table key under "detected-issue/"
  flag_severity level;
  std::string detail;     // for clinicians and IT: numbers, dates, record ids; never patient data
  std::vector<implicated_resource> implicated;
};

struct eligibility_assessment {
  bool meets_chronic_migraine_criteria = false;  // ICHD-3 frequency and duration, label hours
  int failed_preventive_classes = 0;             // distinct counted classes tried and failed
};
eligibility_assessment assess_eligibility(const consultation& c, const code_tables& tables);

// Where the response's baseline came from.
struct baseline_source {
  int headache_days = 0;
  std::optional<std::string> consultation_record_id;  // empty: the follow-up's own baseline field
};

struct response_assessment {
  const clinic_record* reviewed_procedure = nullptr;  // nullptr: not known yet (the record waits)
  std::optional<baseline_source> baseline;
  std::optional<double> reduction_percent;  // (baseline - now) / baseline * 100, 1 decimal
  std::optional<int> cycles;                // injection cycles up to the reviewed procedure
};
response_assessment assess_response(const follow_up& f, const clinic_record& record,
                                    const patient_history& history);

// Every flag the record raises, in a stable order.
std::vector<clinical_flag> find_flags(const clinic_record& record, const patient_history& history,
                                      const code_tables& tables);

// The role of the administration resource for one muscle and side ("administration/temporalis-left").
std::string administration_role(muscle m, side s);

}  // namespace mappings
