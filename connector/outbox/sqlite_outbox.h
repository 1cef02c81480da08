// The outbox in a SQLite file: WAL journal, synchronous=FULL by default (a committed batch survives
// power loss), prepared statements reused for every record.
#pragma once

#include <memory>
#include <string>

#include "connector/outbox/outbox.h"
#include "connector/outbox/sqlite.h"

namespace connector {

class sqlite_outbox final : public outbox {
 public:
  // Opens or creates the store. `full_sync` false trades the last commits on power loss for speed.
  explicit sqlite_outbox(const std::string& path, bool full_sync = true);

  std::vector<enqueue_result> enqueue(const std::vector<inbound_record>& records,
                                      const std::vector<quarantined_record>& quarantined,
                                      std::int64_t now_ms, std::string_view intake_id = {}) override;
  bool intake_seen(std::string_view intake_id) override;
  std::vector<record_summary> records_in_state(record_state state, int limit) override;
  std::vector<record_summary> record_history(const std::string& record_id) override;
  std::vector<quarantine_entry> quarantined(int limit) override;
  bool writable() override;
  std::vector<open_alert> open_alerts() override;
  void set_alert(const open_alert& alert, bool open) override;
  outbox_status status(std::int64_t now_ms) override;
  std::vector<claimed_record> claim(std::int64_t now_ms, int limit) override;
  void settle(const claimed_record& record, const attempt_report& report, std::int64_t now_ms) override;
  int recover_in_flight(std::int64_t now_ms) override;
  std::vector<std::string> delivered_bodies(const std::string& patient_key) override;
  void note_ehr_contact(bool reached, const std::string& detail, std::int64_t now_ms) override;
  std::vector<dead_letter> replay(const std::string& record_id, const std::string& reason,
                                  const std::string& who, bool dry_run, std::int64_t now_ms) override;

 private:
  // Recomputes the patient's lane from its records: its first open record, and when it is ready.
  void refresh_lane(const std::string& patient_key, std::int64_t now_ms);

  sqlite::database db_;
  sqlite::statement latest_revision_;
  sqlite::statement supersede_older_;
  sqlite::statement insert_record_;
  sqlite::statement join_lane_;
  sqlite::statement insert_quarantined_;
  sqlite::statement lane_head_;
  sqlite::statement set_lane_;
  sqlite::statement ready_lanes_;
  sqlite::statement mark_in_flight_;
  sqlite::statement clear_ready_;
  sqlite::statement settle_record_;
  sqlite::statement release_held_;
  sqlite::statement delivered_bodies_;
  sqlite::statement note_contact_;
  sqlite::statement note_intake_;
};

}  // namespace connector
