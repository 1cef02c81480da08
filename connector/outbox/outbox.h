// The durable outbox: the only hand-off between intake and delivery. A record is acknowledged to
// its sender only once it is stored durably with its revision; rejected records are kept in
// quarantine with their problems, so nothing is lost and a corrected revision can follow.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
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
inline constexpr std::array<record_state, 7> all_record_states = {
    record_state::pending,   record_state::in_flight, record_state::retry_scheduled, record_state::delivered,
    record_state::dead,      record_state::superseded, record_state::held};
std::optional<record_state> record_state_named(std::string_view name);

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
  // Refused and quarantined: the record's stored revisions are another patient's. A record never
  // moves between patients (its lane, its history and its FHIR resources are that patient's).
  other_patient,
};
std::string_view to_string(enqueue_result r);

// Why a store operation failed, as far as the caller needs to know: busy and full are degraded
// modes that pass by themselves; the messages name the store and never a record's data.
struct store_error : std::runtime_error {
  enum class kind { busy, full, unwritable, other };
  store_error(kind failure, const std::string& message, bool outcome_unknown = false)
      : std::runtime_error(message), failure(failure), outcome_unknown(outcome_unknown) {}
  kind failure;
  // The commit itself failed after the transaction had ended: it may have committed all the
  // same (as after an I/O error once the log was written). Every write is safe to repeat.
  bool outcome_unknown = false;
};
std::string_view to_string(store_error::kind k);

// An alert that is open, kept so a restart neither repeats nor forgets it.
struct open_alert {
  std::string key;
  std::string detail;
  std::int64_t opened_at_ms = 0;
};

// A process that claims records: the daemon or a `sync --once`. Its liveness is provable by
// others (SQLite: an OS lock it holds on the store's owners file while it lives).
struct owner_summary {
  std::int64_t id = 0;
  std::string kind;  // "daemon", "sync"
  std::string host;  // PostgreSQL: the machine it runs on (SQLite: this one, left empty)
  std::int64_t pid = 0;
  std::int64_t started_at_ms = 0;
  bool alive = false;
  int claims = 0;  // records it has in flight
  std::optional<std::int64_t> lease_until_ms;  // the furthest lease of those claims
  std::vector<std::string> leads;              // the roles it holds the lease of ("alerts")
  // The alert conditions only it can see (its sync log, its certificate files, the records its
  // engine holds for their patient), as it last published them for the alerts' leader.
  std::vector<open_alert> conditions;
};

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
  // Undelivered revisions that were sent without an answer: possibly at the EHR.
  std::int64_t maybe_at_ehr = 0;
  std::vector<owner_summary> owners;  // processes registered to claim records
  // How delivery last said it writes to the EHR (note_write_strategy): one line; empty if never.
  std::string write_strategy;
};

// A record handed to the sync engine: the head of its patient's lane, under a claim. The claim
// is a lease: it counts only while `token` is the record's current token and the lease has not
// run out; a holder that died or stalled has its claims taken over, and its late settle is refused.
struct claimed_record {
  std::int64_t seq = 0;  // arrival order, the outbox's handle on the record
  std::string record_id;
  int revision = 1;
  std::string patient_key;
  std::string body;
  int attempts = 0;  // including this one
  std::int64_t owner = 0;
  std::int64_t token = 0;  // the fencing token: a new one with every claim of the record
  std::int64_t lease_until_ms = 0;  // wall clock, as the store has it (renewals move it on)
  std::int64_t received_at_ms = 0;  // when this revision was stored: arrival to delivery is latency
};

// How the EHR was last seen, noted with a settle (one transaction) or alone (a probe).
struct ehr_contact {
  bool reached = false;  // any HTTP answer counts as reached
  std::string detail;    // "HTTP 200", "connect: Connection refused"
};

// How an attempt ended, as the outbox records it.
struct attempt_report {
  enum class result { delivered, retry, dead, held, released };
  result what = result::delivered;
  std::int64_t retry_at_ms = 0;  // with retry (and released: when the lane may go again)
  std::string error;             // the reason: no patient data
  std::string ehr_response;      // the transaction-response (delivered) or OperationOutcome (dead)
  // The request went out and no answer says what became of it: the EHR may hold this revision,
  // so a later amendment is mapped with it in the history.
  bool maybe_at_ehr = false;
  std::optional<ehr_contact> contact;
};

// The state a settle leaves its record in, as both stores name it.
std::string_view state_after(attempt_report::result r);
// Problems as stored with a rejected record: an OperationOutcome, as the EHR and the CLI use.
std::string problems_as_outcome(const fhir::issues& problems);

// A claim the outbox took back from a holder that died or whose lease ran out.
struct recovered_claim {
  std::string record_id;
  int revision = 1;
  std::string patient_key;
  std::string holder;  // "daemon pid 123 (gone)", "sync pid 9 (lease expired)"
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
  bool maybe_at_ehr = false;  // sent, outcome unknown: treated as possibly delivered
};

// A rejected record as listed for IT staff: where it came from and its problems, not its body.
struct quarantine_entry {
  std::int64_t id = 0;
  std::string source;
  std::string record_id;
  std::string problems_json;  // an OperationOutcome: one issue per problem, with its field
  std::int64_t received_at_ms = 0;
};

// A dead letter chosen for replay, as it was before.
struct dead_letter {
  std::string record_id;
  int revision = 1;
  std::string last_error;
};

// The ledger: where the EHR takes no transaction, a record's resources are written one request at
// a time, and the id and version the EHR gave each one are kept here, per resource key (its type
// and business identifier), written as each request succeeds. A record interrupted mid-way
// resumes where it stopped; an amendment updates what was created instead of creating again.
struct ledger_key {
  std::string type, system, value;
  bool operator<(const ledger_key& o) const { return std::tie(type, system, value) < std::tie(o.type, o.system, o.value); }
};
struct ledger_entry {
  ledger_key key;
  std::string record_id;  // the record that wrote it last
  // Empty: a create was about to be sent and no answer was recorded: it may or may not be at the
  // EHR (the request was written before sending, so a crash in between is known).
  std::string ehr_id;
  std::string version;  // the EHR's versionId, when it gives one
  std::int64_t updated_at_ms = 0;
};

// Every operation either completes or throws store_error; a throw leaves the store as it was.
// One outbox object is one connection: use it from one thread at a time.
class outbox {
 public:
  virtual ~outbox() = default;

  // ---- intake ----
  // Stores one batch in one transaction and returns what became of each record, in order.
  // It returns only once the batch is durable: that is when its sender may be told.
  // With an `intake_id` (the inbox's digest of a file), that id is recorded in the same
  // transaction, so a file ingested just before a crash is known to be in when it is seen again.
  virtual std::vector<enqueue_result> enqueue(const std::vector<inbound_record>& records,
                                              const std::vector<quarantined_record>& quarantined,
                                              std::int64_t now_ms, std::string_view intake_id = {}) = 0;
  virtual bool intake_seen(std::string_view intake_id) = 0;

  // ---- the patient key ----
  // The fingerprint of the key this store's lanes are hashed with, if one is recorded.
  virtual std::optional<std::string> patient_key_fingerprint() = 0;
  // Records it, when none is recorded yet.
  virtual void record_patient_key_fingerprint(const std::string& fingerprint) = 0;
  // True once any record, rejected ones included, or any lane is stored: no longer a new store.
  virtual bool holds_records() = 0;

  // ---- delivery: owners, claims, settles ----
  // Registers this process as a claim holder. A second "daemon" on a store that allows one is
  // refused with a store_error naming the running one.
  virtual std::int64_t register_owner(std::string_view kind, std::int64_t now_ms) = 0;
  // A clean exit: claims still held go back to their lanes (possibly at the EHR), the owner goes.
  virtual void release_owner(std::int64_t owner, std::int64_t now_ms) = 0;

  // Up to `limit` lane heads ready at `now_ms`, claimed for `owner` until now_ms + lease_ms: one
  // record per patient at most, so each patient's records go strictly in order while patients
  // proceed independently. A lane whose head another process holds is not ready.
  virtual std::vector<claimed_record> claim(std::int64_t owner, std::int64_t now_ms, std::int64_t lease_ms,
                                            int limit) = 0;
  // Extends the leases of claims still held; returns the seqs of those no longer held (taken over).
  virtual std::vector<std::int64_t> renew(const std::vector<claimed_record>& claims, std::int64_t now_ms,
                                          std::int64_t lease_ms) = 0;

  // Settles a claimed record and moves its lane on, if the claim still holds (false otherwise:
  // the claim was taken over, and this report is not recorded). Repeating a settle that was
  // recorded (after an error whose outcome was unknown) returns true and changes nothing:
  // - delivered / dead: the lane advances (a dead letter holds back nobody; it waits for replay);
  //   a delivery also returns the patient's held follow-ups to the lane;
  // - retry: the lane waits until retry_at_ms;
  // - held: the record leaves the lane until a procedure of the patient is delivered;
  // - released: not attempted after all; back to its lane, ready at retry_at_ms.
  virtual bool settle(const claimed_record& record, const attempt_report& report, std::int64_t now_ms) = 0;

  // The sweep: claims whose holder is provably gone, or whose lease ran out, go back to their
  // lanes, marked possibly at the EHR (nobody knows whether they were sent). The caller's own
  // claims go back only when their lease ran out and they are not among `holding` (the claims it
  // knows it has: a claim whose commit it could not confirm, say). Also puts right lane times a
  // wall clock stepping backwards left far in the future (beyond `horizon_ms`).
  virtual std::vector<recovered_claim> take_over(std::int64_t now_ms, std::int64_t horizon_ms,
                                                 const std::vector<claimed_record>& holding = {}) = 0;

  // What the mapper may know of a patient: every revision delivered or possibly at the EHR,
  // oldest first, except the record `except_seq` being mapped.
  virtual std::vector<std::string> history(const std::string& patient_key, std::int64_t except_seq) = 0;

  // Notes how the latest attempt to reach the EHR went (a probe), for status and alerts.
  virtual void note_ehr_contact(const ehr_contact& contact, std::int64_t now_ms) = 0;

  // ---- the ledger ----
  // The entries for these keys that exist (in no particular order).
  virtual std::vector<ledger_entry> ledger_lookup(const std::vector<ledger_key>& keys) = 0;
  // Records (inserts or replaces) one entry for the claimed record, if the claim still holds:
  // false otherwise (fenced, like settle), and nothing is written.
  virtual bool ledger_record(const claimed_record& claim, const ledger_entry& entry, std::int64_t now_ms) = 0;
  // What the ledger holds for one record (status, the admin API).
  virtual std::vector<ledger_entry> ledger_of_record(const std::string& record_id) = 0;

  // ---- IT staff ----
  // Records the write strategy in force (a line for status: mode, why, what is left out).
  virtual void note_write_strategy(const std::string& summary) = 0;
  virtual outbox_status status(std::int64_t now_ms) = 0;

  // Dead letters back to their lanes (`record_id`, or every one when empty), each replay recorded
  // with who asked and why. With `dry_run`, only says which would be.
  virtual std::vector<dead_letter> replay(const std::string& record_id, const std::string& reason,
                                          const std::string& who, bool dry_run, std::int64_t now_ms) = 0;

  // Records in a state, oldest first, and every revision of one record.
  virtual std::vector<record_summary> records_in_state(record_state state, int limit) = 0;
  virtual std::vector<record_summary> record_history(const std::string& record_id) = 0;

  // The newest rejected records first.
  virtual std::vector<quarantine_entry> quarantined(int limit) = 0;

  // Why the store cannot take writes now, for people (/readyz, the store_unwritable alert):
  // its disk is full, or a write transaction cannot start. nullopt: it can.
  virtual std::optional<std::string> write_problem() = 0;

  // The alerts open now; open (insert or update) or close one.
  virtual std::vector<open_alert> open_alerts() = 0;
  virtual void set_alert(const open_alert& alert, bool open) = 0;

  // ---- several instances on one store (PostgreSQL; SQLite has one daemon, which plays every role) ----
  // Takes or renews, for `owner`, the lease on a role one process plays at a time, until lease_ms
  // from now: "alerts" evaluates and posts the alerts, so an incident gives one alert however
  // many instances see it. True while `owner` holds it; a holder that died (its session gone) or
  // let the lease run out loses it to the next that asks.
  virtual bool lead(std::string_view role, std::int64_t owner, std::int64_t now_ms, std::int64_t lease_ms) = 0;
  // Publishes the alert conditions only this owner can see, for the leader (owner_summary::conditions).
  virtual void note_owner_conditions(std::int64_t owner, const std::vector<open_alert>& conditions) = 0;
  // Holds the inbox file `name` for this process while it ingests and moves it: false when
  // another process holds it now. Released by release_intake_file, or when the process ends.
  virtual bool hold_intake_file(std::string_view name) = 0;
  virtual void release_intake_file(std::string_view name) = 0;
};

}  // namespace connector
