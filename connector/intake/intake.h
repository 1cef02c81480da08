// Intake: the one way records enter the outbox, whichever channel brought them (the `ingest`
// command, the inbox folder, the HTTPS ingest API). Each record is read against the contract;
// the accepted ones are stored and the rejected ones quarantined in one transaction, and each
// becomes a `received` or `rejected` event. When take() returns, the batch is durable.
// An intake holds no connection: each take() is given the outbox of the thread it runs on.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "connector/observe/sync_event.h"
#include "connector/outbox/outbox.h"
#include "connector/config/patient_key.h"
#include "connector/intake/record_files.h"
#include "fhir/issue.h"
#include "mappings/mapping_set.h"

namespace connector {

struct intake_result {
  std::size_t line = 1;   // where the record starts in its file or request body
  std::string record_id;  // as far as it could be read (may be empty when rejected)
  int revision = 0;
  std::string record_type;
  bool accepted = false;
  enqueue_result stored = enqueue_result::accepted;  // with accepted
  fhir::issues problems;                             // with rejected: each names the field
};

class intake {
 public:
  // Each batch is read against the code tables current when it starts.
  intake(const mappings::mapping_source& mappings, const patient_key& patients, event_sink& events, clock_ms now);

  // `source` is kept with rejected records and named in the log (a file's handle, "ingest API"):
  // never a file name, which a practice system may make of patient data. `channel` goes to the
  // log (cli, inbox, api); `intake_id` see outbox::enqueue. With `quarantine` false, rejected
  // records are reported but not quarantined again (a file already taken once).
  std::vector<intake_result> take(outbox& store, const std::vector<record_text>& records, const std::string& source,
                                  std::string_view channel, std::string_view intake_id = {},
                                  bool quarantine = true);

 private:
  const mappings::mapping_source& mappings_;
  const patient_key& patients_;
  event_sink& events_;
  clock_ms now_;
};

// "3 accepted, 1 already stored, 1 rejected": a batch at a glance.
std::string describe_batch(const std::vector<intake_result>& results);

}  // namespace connector
