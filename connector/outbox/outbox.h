// The durable outbox: the only hand-off between intake and delivery. A record is acknowledged to
// its sender only once it is stored durably with its revision; rejected records are kept in
// quarantine with their problems, so nothing is lost and a corrected revision can follow.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "connector/clock.h"
#include "fhir/issue.h"

namespace connector {

enum class record_state {
  pending,          // waiting for its lane
  in_flight,        // being sent
  retry_scheduled,  // failed in a way worth retrying; next attempt at next_attempt_at
  delivered,        // the EHR accepted its transaction
  dead,             // failed permanently; kept with the EHR's answer until replayed
  superseded,       // a newer revision arrived before this one was delivered
  held,             // a follow-up waiting for its procedure; out of the lane until one is delivered
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
  // The EHR as last seen: when, and whether it answered (any HTTP answer counts as reached).
  std::optional<std::int64_t> ehr_last_contact_ms;
  bool ehr_reached = false;
  std::string ehr_detail;
  std::optional<std::int64_t> ehr_unreachable_since_ms;  // first failure since it was last reached
};

// A record handed to the sync engine: the head of its patient's lane.
struct claimed_record {
  std::int64_t seq = 0;  // arrival order, the outbox's handle on the record
  std::string record_id;
  int revision = 1;
  std::string patient_key;
  std::string body;
  int attempts = 0;  // including this one
};

// How an attempt ended, as the outbox records it.
struct attempt_report {
  enum class result { delivered, retry, dead, held, released };
  result what = result::delivered;
  std::int64_t retry_at_ms = 0;  // with retry (and released: when the lane may go again)
  std::string error;             // the reason: no patient data
  std::string ehr_response;      // the transaction-response (delivered) or OperationOutcome (dead)
};

// One stored revision as IT staff see it: never the body, which holds patient data.
struct record_summary {
  std::string record_id;
  int revision = 1;
  std::string record_type;
  record_state state = record_state::pending;
  int attempts = 0;
  std::string last_error;
  std::string ehr_response;  // what the EHR made of it, or its OperationOutcome (dead letters)
  std::string patient_key;
  std::int64_t received_at_ms = 0;
  std::int64_t updated_at_ms = 0;
};

// A rejected record as listed for IT staff: where it came from and its problems, not its body.
struct quarantine_entry {
  std::int64_t id = 0;
  std::string source;
  std::string record_id;
  std::string problems_json;  // an OperationOutcome: one issue per problem, with its field
  std::int64_t received_at_ms = 0;
};

// An alert that is open, kept so a restart neither repeats nor forgets it.
struct open_alert {
  std::string key;
  std::string detail;
  std::int64_t opened_at_ms = 0;
};

// A dead letter chosen for replay, as it was before.
struct dead_letter {
  std::string record_id;
  int revision = 1;
  std::string last_error;
};

class outbox {
 public:
  virtual ~outbox() = default;

  // Stores one batch in one transaction and returns what became of each record, in order.
  // It returns only once the batch is durable: that is when its sender may be told.
  // With an `intake_id` (the inbox's digest of a file), that id is recorded in the same
  // transaction, so a file ingested just before a crash is known to be in when it is seen again.
  virtual std::vector<enqueue_result> enqueue(const std::vector<inbound_record>& records,
                                              const std::vector<quarantined_record>& quarantined,
                                              std::int64_t now_ms, std::string_view intake_id = {}) = 0;
  virtual bool intake_seen(std::string_view intake_id) = 0;

  virtual outbox_status status(std::int64_t now_ms) = 0;

  // Up to `limit` lane heads ready at `now_ms`, marked in flight: one record per patient at most,
  // so each patient's records go strictly in order while patients proceed independently.
  virtual std::vector<claimed_record> claim(std::int64_t now_ms, int limit) = 0;

  // Settles a claimed record and moves its lane on:
  // - delivered / dead: the lane advances (a dead letter holds back nobody; it waits for replay);
  //   a delivery also returns the patient's held follow-ups to the lane;
  // - retry: the lane waits until retry_at_ms;
  // - held: the record leaves the lane until a procedure of the patient is delivered;
  // - released: not attempted after all (delivery paused); back to pending, lane ready at retry_at_ms.
  virtual void settle(const claimed_record& record, const attempt_report& report, std::int64_t now_ms) = 0;

  // Records left in flight by a crash go back to their lanes: their outcome is unknown, and
  // sending again is safe because every write is conditional. Returns how many.
  virtual int recover_in_flight(std::int64_t now_ms) = 0;

  // Dead letters back to their lanes (`record_id`, or every one when empty), each replay recorded
  // with who asked and why. With `dry_run`, only says which would be.
  virtual std::vector<dead_letter> replay(const std::string& record_id, const std::string& reason,
                                          const std::string& who, bool dry_run, std::int64_t now_ms) = 0;

  // Notes how the latest attempt to reach the EHR went, for status.
  virtual void note_ehr_contact(bool reached, const std::string& detail, std::int64_t now_ms) = 0;

  // Records in a state, oldest first, and every revision of one record.
  virtual std::vector<record_summary> records_in_state(record_state state, int limit) = 0;
  virtual std::vector<record_summary> record_history(const std::string& record_id) = 0;

  // The newest rejected records first.
  virtual std::vector<quarantine_entry> quarantined(int limit) = 0;

  // True when a write transaction can start now (for /readyz).
  virtual bool writable() = 0;

  // The alerts open now; open (insert or update) or close one.
  virtual std::vector<open_alert> open_alerts() = 0;
  virtual void set_alert(const open_alert& alert, bool open) = 0;

  // What the mapper may know of a patient: the delivered records (every revision), oldest first.
  virtual std::vector<std::string> delivered_bodies(const std::string& patient_key) = 0;
};

}  // namespace connector
