// Reading, storing and logging one batch of records.
#include "connector/intake/intake.h"

#include "mappings/record_reader.h"

namespace connector {

intake::intake(const mappings::mapping_source& mappings, const patient_key& patients, event_sink& events,
               clock_ms now)
    : mappings_(mappings), patients_(patients), events_(events), now_(std::move(now)) {}

std::vector<intake_result> intake::take(outbox& store, const std::vector<record_text>& records,
                                        const std::string& source,
                                        std::string_view channel, std::string_view intake_id, bool quarantine) {
  std::vector<intake_result> results;
  results.reserve(records.size());
  std::vector<inbound_record> accepted;
  std::vector<std::string> patients;  // keyed hashes, for the log
  std::vector<quarantined_record> rejected;
  const auto set = mappings_.current();
  for (const auto& text : records) {
    auto read = mappings::read_record(text.json, set->tables());
    intake_result r;
    r.line = text.line;
    r.record_id = read.record_id;
    if (read.record) {
      const auto& record = *read.record;
      r.accepted = true;
      r.revision = record.revision;
      r.record_type = record.type_name();
      accepted.push_back({record.record_id, record.revision, r.record_type, patients_.of(record.patient.mrn),
                          std::string(text.json)});
    } else {
      r.problems = read.problems;
      rejected.push_back({source, read.record_id, std::string(text.json), std::move(read.problems)});
    }
    results.push_back(std::move(r));
  }
  const std::int64_t now = now_();
  const auto stored = store.enqueue(accepted, quarantine ? rejected : std::vector<quarantined_record>{}, now, intake_id);

  // Durable now: log each record.
  std::size_t next_stored = 0;
  for (auto& r : results) {
    sync_event e;
    e.time_ms = now;
    e.record_id = r.record_id;
    e.record_type = r.record_type;
    e.revision = r.revision;
    e.channel = std::string(channel);
    if (r.accepted && stored[next_stored] == enqueue_result::other_patient) {
      // The store refused it (and quarantined it): its earlier revisions are another patient's.
      r.accepted = false;
      r.stored = stored[next_stored++];
      r.problems = {{fhir::severity::error, "business-rule", "patient.mrn",
                     "names another patient than the stored revisions of this record: a record cannot move between "
                     "patients; retract it (status entered-in-error) and send the corrected one under a new record_id"}};
    }
    if (r.accepted) {
      const inbound_record& in = accepted[next_stored];
      r.stored = stored[next_stored++];
      e.name = event::received;
      e.patient = in.patient_key;
      if (r.stored != enqueue_result::accepted) e.detail = std::string(to_string(r.stored));
    } else {
      e.name = event::rejected;
      std::string detail = source + " line " + std::to_string(r.line) + ": ";
      for (std::size_t i = 0; i < r.problems.size(); ++i) {
        const auto& p = r.problems[i];
        if (i > 0) detail += "; ";
        detail += p.path.empty() ? p.message : p.path + ": " + p.message;
      }
      e.detail = std::move(detail);
    }
    events_.emit(e);
  }
  return results;
}

std::string describe_batch(const std::vector<intake_result>& results) {
  std::size_t fresh = 0, superseding = 0, duplicate = 0, stale = 0, rejected = 0;
  for (const auto& r : results) {
    if (!r.accepted) {
      ++rejected;
      continue;
    }
    switch (r.stored) {
      case enqueue_result::accepted: ++fresh; break;
      case enqueue_result::accepted_superseding: ++superseding; break;
      case enqueue_result::duplicate: ++duplicate; break;
      case enqueue_result::stale: ++stale; break;
      case enqueue_result::other_patient: break;  // counted as rejected above
    }
  }
  std::string text = std::to_string(fresh + superseding) + " accepted";
  if (superseding > 0) text += " (" + std::to_string(superseding) + " superseding an undelivered revision)";
  if (duplicate > 0) text += ", " + std::to_string(duplicate) + " already stored";
  if (stale > 0) text += ", " + std::to_string(stale) + " older than a stored revision (no-op)";
  return text + ", " + std::to_string(rejected) + " rejected";
}

}  // namespace connector
