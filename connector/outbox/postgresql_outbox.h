// The outbox in a PostgreSQL database, for several connector instances sharing one queue (issue
// 13). The same contract as sqlite_outbox, with what sharing needs:
// - every change to a patient's lane happens under that lane's row lock, taken first (several
//   lanes: in key order, so two instances never deadlock on each other's batches); claims take
//   ready lanes with FOR UPDATE SKIP LOCKED, so an instance never waits for another's claim;
// - each owner proves it lives by a session-level advisory lock held on the connection that
//   registered it: when its process dies the server drops the session and the lock, and others
//   take its claims at once; a frozen process keeps its session, so its claims wait for the lease;
// - fencing tokens as in SQLite: a settle or ledger write with a stale token changes nothing.
// Conflicts between instances (deadlock, serialization, a key raced, a lock waited for past
// busy_timeout_ms) and a lost connection run the transaction again, up to busy_attempts times.
#pragma once

#include <functional>
#include <map>
#include <set>
#include <string>

#include "connector/outbox/outbox.h"
#include "connector/outbox/postgresql.h"

namespace connector {

struct postgresql_options {
  std::string conninfo;  // store.url: a libpq connection string or URI, without a password
  std::string password;  // from store.password_file; empty: libpq's PGPASSWORD or ~/.pgpass
  int busy_timeout_ms = 2000;  // lock_timeout: a row lock waited for this long is a busy store
  int busy_attempts = 3;
  std::function<void(std::string_view operation, int attempt)> on_busy;
  std::string instance;  // names this process's rows (its EHR contact); empty: host:pid
};

// The schema version this build writes, recorded in meta.schema_version.
inline constexpr int postgresql_schema_version = 2;

class postgresql_outbox final : public outbox {
 public:
  // Connects, and creates or migrates the schema (in the connection's current schema, public by
  // default; another one through options=-csearch_path=...). Throws store_error.
  explicit postgresql_outbox(postgresql_options options);

  std::vector<enqueue_result> enqueue(const std::vector<inbound_record>& records,
                                      const std::vector<quarantined_record>& quarantined,
                                      std::int64_t now_ms, std::string_view intake_id = {}) override;
  bool intake_seen(std::string_view intake_id) override;
  std::optional<std::string> patient_key_fingerprint() override;
  void record_patient_key_fingerprint(const std::string& fingerprint) override;
  bool holds_records() override;
  std::int64_t register_owner(std::string_view kind, std::int64_t now_ms) override;
  void release_owner(std::int64_t owner, std::int64_t now_ms) override;
  std::vector<claimed_record> claim(std::int64_t owner, std::int64_t now_ms, std::int64_t lease_ms,
                                    int limit) override;
  std::vector<std::int64_t> renew(const std::vector<claimed_record>& claims, std::int64_t now_ms,
                                  std::int64_t lease_ms) override;
  bool settle(const claimed_record& record, const attempt_report& report, std::int64_t now_ms) override;
  std::vector<recovered_claim> take_over(std::int64_t now_ms, std::int64_t horizon_ms,
                                        const std::vector<claimed_record>& holding = {}) override;
  std::vector<std::string> history(const std::string& patient_key, std::int64_t except_seq) override;
  void note_ehr_contact(const ehr_contact& contact, std::int64_t now_ms) override;
  std::vector<ledger_entry> ledger_lookup(const std::vector<ledger_key>& keys) override;
  bool ledger_record(const claimed_record& claim, const ledger_entry& entry, std::int64_t now_ms) override;
  std::vector<ledger_entry> ledger_of_record(const std::string& record_id) override;
  void note_write_strategy(const std::string& summary) override;
  outbox_status status(std::int64_t now_ms) override;
  std::vector<dead_letter> replay(const std::string& record_id, const std::string& reason,
                                  const std::string& who, bool dry_run, std::int64_t now_ms) override;
  std::vector<record_summary> records_in_state(record_state state, int limit) override;
  std::vector<record_summary> record_history(const std::string& record_id) override;
  std::vector<quarantine_entry> quarantined(int limit) override;
  std::optional<std::string> write_problem() override;
  std::vector<open_alert> open_alerts() override;
  void set_alert(const open_alert& alert, bool open) override;
  bool lead(std::string_view role, std::int64_t owner, std::int64_t now_ms, std::int64_t lease_ms) override;
  void note_owner_conditions(std::int64_t owner, const std::vector<open_alert>& conditions) override;
  bool hold_intake_file(std::string_view name) override;
  void release_intake_file(std::string_view name) override;

  // The schema version the database records (config-check).
  int schema_version();
  // "database migraine on /run/postgresql": where it is, never who or with what password.
  std::string where() const { return db_.where(); }

 private:
  template <typename Work>
  auto write(std::string_view operation, Work work) -> decltype(work());
  template <typename Work>
  auto read(Work work) -> decltype(work());
  store_error translate(const postgresql::pg_error& e, bool outcome_unknown = false) const;
  void connect_again();

  void migrate();
  // Takes the row locks of these patients' lanes, creating the rows, in key order.
  void lock_lanes(std::vector<std::string> patient_keys);
  void refresh_lane(const std::string& patient_key, std::int64_t now_ms);
  void record_contact(const ehr_contact& contact, std::int64_t now_ms);

  postgresql_options options_;
  postgresql::connection db_;
  std::int64_t lock_class_ = 0;        // the advisory-lock namespace of this schema
  std::string instance_;               // host:pid, naming this process's rows (EHR contact)
  std::map<std::int64_t, std::string> own_owners_;  // registered here (id -> kind): alive by definition
  std::set<std::string> held_files_;  // lock keys of the inbox files held here, taken again on a new session
  std::int64_t registered_at_ms_ = 0;
};

}  // namespace connector
