// The durable outbox: the only hand-off between intake and delivery. A record is acknowledged to
// its sender only once it is stored durably with its revision; rejected records are kept in
// quarantine with their problems, so nothing is lost and a corrected revision can follow.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fhir/issue.h"

namespace connector {

enum class record_state {
  pending,          // waiting for its lane
  in_flight,        // being sent
  retry_scheduled,  // failed in a way worth retrying; next attempt at next_attempt_at
  delivered,        // the EHR accepted its transaction
  dead,             // failed permanently; kept with the EHR's answer until replayed
  superseded,       // a newer revision arrived before this one was delivered
};
std::string_view to_string(record_state s);

// A record the reader accepted.
struct inbound_record {
  std::string record_id;
  int revision = 1;
  std::string record_type;
  std::string patient_key;  // keyed hash of the MRN: names the patient's lane without revealing it
  std::string body;         // the record exactly as received: audit trail, extra fields, replay
};

// A record the reader rejected, kept with its problems.
struct quarantined_record {
  std::string source;     // where it came from: a file name, later an API request
  std::string record_id;  // as far as it could be read; may be empty
  std::string body;
  fhir::issues problems;
};

enum class enqueue_result {
  accepted,
  accepted_superseding,  // accepted; an undelivered older revision will not be sent
  duplicate,             // this revision is stored already: a resend, nothing to do
  stale,                 // a newer revision is stored already: a no-op, as the contract says
};
std::string_view to_string(enqueue_result r);

struct outbox_status {
  std::map<record_state, std::int64_t> records;
  std::int64_t quarantined = 0;
  std::optional<std::int64_t> oldest_pending_age_ms;  // pending or retry scheduled
  std::optional<std::string> last_error;              // of the most recent failed attempt
};

class outbox {
 public:
  virtual ~outbox() = default;

  // Stores one batch in one transaction and returns what became of each record, in order.
  // It returns only once the batch is durable: that is when its sender may be told.
  virtual std::vector<enqueue_result> enqueue(const std::vector<inbound_record>& records,
                                              const std::vector<quarantined_record>& quarantined,
                                              std::int64_t now_ms) = 0;

  virtual outbox_status status(std::int64_t now_ms) = 0;
};

}  // namespace connector
