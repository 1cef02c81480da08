// The outbox in a SQLite file: WAL journal, synchronous=FULL by default (a committed batch survives
// power loss), prepared statements reused for every record. Several processes may use one store:
// claims carry an owner, a lease and a fencing token, owners prove they live with OS locks
// (owner_locks.h), and one daemon at most runs on a store.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <set>
#include <string>

#include "connector/outbox/outbox.h"
#include "connector/outbox/owner_locks.h"
#include "connector/outbox/sqlite.h"

namespace connector {

struct sqlite_options {
  bool full_sync = true;  // synchronous=FULL; false trades the last commits on power loss for speed
  // A write waits this long for another connection's lock, and is tried `busy_attempts` times in
  // all before it fails with store_error::kind::busy. Each wait is reported to `on_busy`.
  int busy_timeout_ms = 2000;
  int busy_attempts = 3;
  std::function<void(std::string_view operation, int attempt)> on_busy;
};

// The schema version this build writes. Older stores are migrated forward at open, in one
// transaction; a newer one is refused.
inline constexpr int sqlite_schema_version = 7;

class sqlite_outbox final : public outbox {
 public:
  // Opens or creates the store. Throws store_error.
  explicit sqlite_outbox(const std::string& path, sqlite_options options = {});
  sqlite_outbox(const std::string& path, bool full_sync)
      : sqlite_outbox(path, sqlite_options{.full_sync = full_sync, .on_busy = {}}) {}

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
  // One daemon per SQLite store: it plays every role and holds every inbox file it sees.
  bool lead(std::string_view, std::int64_t, std::int64_t, std::int64_t) override { return true; }
  void note_owner_conditions(std::int64_t, const std::vector<open_alert>&) override {}
  bool hold_intake_file(std::string_view) override { return true; }
  void release_intake_file(std::string_view) override {}

  // Writes that found the store locked past the busy timeout, since this object was opened.
  std::int64_t busy_waits() const { return busy_waits_; }

  // Fault injection for tests: the statement running when SQLite has executed `vm_steps` more
  // virtual-machine steps fails with SQLITE_INTERRUPT (0 turns it off). Every step of every
  // operation can be made to fail this way, as Beast's fail_count does for streams.
  void fail_after_steps(std::int64_t vm_steps);

 private:
  // Runs `work` in a write transaction, again while the store is busy (up to busy_attempts), and
  // turns SQLite's errors into store_error. `work` must leave no trace outside the database.
  template <typename Work>
  auto write(std::string_view operation, Work work) -> decltype(work());
  template <typename Work>
  auto read(Work work) -> decltype(work());

  // Recomputes the patient's lane from its records: its first open record, and when it is ready.
  void refresh_lane(const std::string& patient_key, std::int64_t now_ms);
  void record_contact(const ehr_contact& contact, std::int64_t now_ms);

  std::string path_;
  sqlite_options options_;
  sqlite::database db_;
  owner_locks locks_;
  std::set<std::int64_t> own_owners_;  // registered through this object: alive by definition
  std::atomic<std::int64_t> busy_waits_{0};
  std::int64_t steps_to_failure_ = 0;
  sqlite::statement latest_revision_;
  sqlite::statement supersede_older_;
  sqlite::statement insert_record_;
  sqlite::statement join_lane_;
  sqlite::statement insert_quarantined_;
  sqlite::statement lane_in_flight_;
  sqlite::statement lane_head_;
  sqlite::statement set_lane_;
  sqlite::statement ready_lanes_;
  sqlite::statement mark_in_flight_;
  sqlite::statement clear_ready_;
  sqlite::statement settle_record_;
  sqlite::statement renew_claim_;
  sqlite::statement release_held_;
  sqlite::statement history_;
  sqlite::statement note_contact_;
  sqlite::statement note_intake_;
};

}  // namespace connector
