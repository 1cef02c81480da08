// SQLite schema and statements of the outbox.
#include "connector/outbox/sqlite_outbox.h"

#include <array>

#include "fhir/json_writer.h"

namespace connector {
namespace {

constexpr std::array<record_state, 7> all_states = {
    record_state::pending, record_state::in_flight,  record_state::retry_scheduled,
    record_state::delivered, record_state::dead,     record_state::superseded,
    record_state::held};

// One row per received revision; seq is the arrival order that lanes follow.
constexpr const char* schema = R"sql(
CREATE TABLE IF NOT EXISTS records (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  record_id TEXT NOT NULL,
  revision INTEGER NOT NULL,
  record_type TEXT NOT NULL,
  patient_key TEXT NOT NULL,
  body TEXT NOT NULL,
  state TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER,
  last_error TEXT,
  ehr_response TEXT,
  received_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  UNIQUE (record_id, revision)
);
-- A patient's records by state: the lane's next open record, and the delivered history the
-- mapper needs, are both short ranges of it however long the backlog. Deliberately the only
-- secondary index besides (record_id, revision): each one costs every ingest. What only status,
-- replay and start-up ask goes through the lanes table or a scan.
CREATE INDEX IF NOT EXISTS records_by_patient ON records (patient_key, state, seq);
DROP INDEX IF EXISTS records_by_state;
-- One row per patient: the lane's first open record and when it may be sent (NULL while in
-- flight or empty). Claiming work is a range over ready_at, whatever the size of the backlog.
CREATE TABLE IF NOT EXISTS lanes (
  patient_key TEXT PRIMARY KEY,
  head_seq INTEGER,
  ready_at INTEGER
);
CREATE INDEX IF NOT EXISTS lanes_ready ON lanes (ready_at) WHERE ready_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS quarantine (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  source TEXT NOT NULL,
  record_id TEXT,
  body TEXT NOT NULL,
  problems TEXT NOT NULL,
  received_at INTEGER NOT NULL
);
-- Who replayed which dead letter, when and why.
CREATE TABLE IF NOT EXISTS replays (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  record_id TEXT NOT NULL,
  revision INTEGER NOT NULL,
  previous_error TEXT,
  reason TEXT NOT NULL,
  requested_by TEXT NOT NULL,
  at INTEGER NOT NULL
);
-- How the EHR was last seen (one row).
CREATE TABLE IF NOT EXISTS ehr_contact (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  reached INTEGER NOT NULL,
  detail TEXT NOT NULL,
  at INTEGER NOT NULL,
  unreachable_since INTEGER  -- the first failed contact since the EHR last answered
);
-- Inbox files whose records are in, by digest: written in the same transaction as the records,
-- so a crash between ingesting a file and moving it away never ingests it twice.
CREATE TABLE IF NOT EXISTS intakes (
  intake_id TEXT PRIMARY KEY,
  at INTEGER NOT NULL
);
-- Dead letters are few and asked for often (status page, metrics): a partial index costs
-- nothing for the records that never die.
CREATE INDEX IF NOT EXISTS records_dead ON records (seq) WHERE state = 'dead';
-- Alerts open now (closed ones are deleted; the sync log keeps their history).
CREATE TABLE IF NOT EXISTS alerts (
  key TEXT PRIMARY KEY,
  detail TEXT NOT NULL,
  opened_at INTEGER NOT NULL
);
PRAGMA user_version = 5;
)sql";

sqlite::database& open(sqlite::database& db, bool full_sync) {
  db.exec("PRAGMA journal_mode = WAL");
  db.exec(full_sync ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL");
  // 32 MB of page cache keeps the indexes' interior pages resident with a large backlog, so a
  // lookup costs the same with a million records waiting as with a thousand.
  db.exec("PRAGMA cache_size = -32768");
  int version = 0;
  {
    sqlite::statement v(db.handle(), "PRAGMA user_version");
    if (v.step()) version = static_cast<int>(v.column_int(0));
  }
  if (version == 4) db.exec("ALTER TABLE ehr_contact ADD COLUMN unreachable_since INTEGER");  // issue 3's stores
  db.exec(schema);
  return db;
}

// The problems as an OperationOutcome: the same shape the EHR and the CLI use.
std::string problems_json(const fhir::issues& problems) {
  fhir::json_writer out;
  fhir::write_operation_outcome(out, problems);
  return std::string(out.view());
}

}  // namespace

std::string_view to_string(record_state s) {
  switch (s) {
    case record_state::pending: return "pending";
    case record_state::in_flight: return "in_flight";
    case record_state::retry_scheduled: return "retry_scheduled";
    case record_state::delivered: return "delivered";
    case record_state::dead: return "dead";
    case record_state::superseded: return "superseded";
    case record_state::held: return "held";
  }
  return "pending";
}

std::string_view to_string(enqueue_result r) {
  switch (r) {
    case enqueue_result::accepted: return "accepted";
    case enqueue_result::accepted_superseding: return "accepted, superseding an undelivered revision";
    case enqueue_result::duplicate: return "duplicate";
    case enqueue_result::stale: return "stale";
  }
  return "accepted";
}

sqlite_outbox::sqlite_outbox(const std::string& path, bool full_sync)
    : db_(path),
      latest_revision_(open(db_, full_sync).handle(),
                       "SELECT MAX(revision) FROM records WHERE record_id = ?1"),
      supersede_older_(db_.handle(),
                       "UPDATE records SET state = 'superseded', updated_at = ?2 "
                       "WHERE record_id = ?1 AND state IN ('pending', 'retry_scheduled')"),
      insert_record_(db_.handle(),
                     "INSERT INTO records (record_id, revision, record_type, patient_key, body, "
                     "state, received_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?6)"),
      // A new record heads its lane only when the lane has no open record; otherwise the lane stays.
      join_lane_(db_.handle(),
                 "INSERT INTO lanes (patient_key, head_seq, ready_at) VALUES (?1, ?2, ?3) "
                 "ON CONFLICT (patient_key) DO UPDATE SET "
                 "ready_at = CASE WHEN lanes.head_seq IS NULL THEN excluded.ready_at ELSE lanes.ready_at END, "
                 "head_seq = COALESCE(lanes.head_seq, excluded.head_seq)"),
      insert_quarantined_(db_.handle(),
                          "INSERT INTO quarantine (source, record_id, body, problems, received_at) "
                          "VALUES (?1, ?2, ?3, ?4, ?5)"),
      lane_head_(db_.handle(),
                 "SELECT seq, state, next_attempt_at FROM records WHERE patient_key = ?1 AND "
                 "state IN ('pending', 'in_flight', 'retry_scheduled') ORDER BY seq LIMIT 1"),
      // A pending head that is already waiting keeps its place in line (fairness between lanes).
      set_lane_(db_.handle(),
                "INSERT INTO lanes (patient_key, head_seq, ready_at) VALUES (?1, ?2, ?3) "
                "ON CONFLICT (patient_key) DO UPDATE SET head_seq = ?2, ready_at = "
                "CASE WHEN ?4 = 1 AND lanes.head_seq IS ?2 AND lanes.ready_at IS NOT NULL "
                "THEN lanes.ready_at ELSE ?3 END"),
      ready_lanes_(db_.handle(),
                   "SELECT l.patient_key, r.seq, r.record_id, r.revision, r.body, r.attempts "
                   "FROM lanes l JOIN records r ON r.seq = l.head_seq "
                   "WHERE l.ready_at IS NOT NULL AND l.ready_at <= ?1 ORDER BY l.ready_at LIMIT ?2"),
      mark_in_flight_(db_.handle(),
                      "UPDATE records SET state = 'in_flight', attempts = attempts + 1, updated_at = ?2 "
                      "WHERE seq = ?1"),
      clear_ready_(db_.handle(), "UPDATE lanes SET ready_at = NULL WHERE patient_key = ?1"),
      settle_record_(db_.handle(),
                     "UPDATE records SET state = ?2, next_attempt_at = ?3, last_error = ?4, "
                     "ehr_response = COALESCE(?5, ehr_response), attempts = attempts - ?6, "
                     "updated_at = ?7 WHERE seq = ?1"),
      release_held_(db_.handle(),
                    "UPDATE records SET state = 'pending', updated_at = ?2 "
                    "WHERE patient_key = ?1 AND state = 'held'"),
      delivered_bodies_(db_.handle(),
                        "SELECT body FROM records WHERE patient_key = ?1 AND state = 'delivered' "
                        "ORDER BY seq"),
      note_contact_(db_.handle(),
                    "INSERT INTO ehr_contact (id, reached, detail, at, unreachable_since) "
                    "VALUES (1, ?1, ?2, ?3, CASE WHEN ?1 = 1 THEN NULL ELSE ?3 END) "
                    "ON CONFLICT (id) DO UPDATE SET reached = ?1, detail = ?2, at = ?3, unreachable_since = "
                    "CASE WHEN ?1 = 1 THEN NULL ELSE COALESCE(ehr_contact.unreachable_since, ?3) END"),
      note_intake_(db_.handle(), "INSERT OR IGNORE INTO intakes (intake_id, at) VALUES (?1, ?2)") {}

void sqlite_outbox::note_ehr_contact(bool reached, const std::string& detail, std::int64_t now_ms) {
  note_contact_.bind(1, static_cast<std::int64_t>(reached ? 1 : 0)).bind(2, detail).bind(3, now_ms);
  note_contact_.step();
  note_contact_.reset();
}

void sqlite_outbox::refresh_lane(const std::string& patient_key, std::int64_t now_ms) {
  lane_head_.bind(1, patient_key);
  std::optional<std::int64_t> head, ready;
  bool pending = false;
  if (lane_head_.step()) {
    head = lane_head_.column_int(0);
    const std::string state = lane_head_.column_text(1);
    pending = state == "pending";
    if (pending) ready = now_ms;
    if (state == "retry_scheduled") ready = lane_head_.column_int(2);
  }
  lane_head_.reset();
  set_lane_.bind(1, patient_key);
  head ? set_lane_.bind(2, *head) : set_lane_.bind_null(2);
  ready ? set_lane_.bind(3, *ready) : set_lane_.bind_null(3);
  set_lane_.bind(4, static_cast<std::int64_t>(pending ? 1 : 0));
  set_lane_.step();
  set_lane_.reset();
}

std::vector<claimed_record> sqlite_outbox::claim(std::int64_t now_ms, int limit) {
  std::vector<claimed_record> claimed;
  sqlite::transaction tx(db_);
  ready_lanes_.bind(1, now_ms).bind(2, static_cast<std::int64_t>(limit));
  while (ready_lanes_.step()) {
    claimed.push_back({ready_lanes_.column_int(1), ready_lanes_.column_text(2),
                       static_cast<int>(ready_lanes_.column_int(3)), ready_lanes_.column_text(0),
                       ready_lanes_.column_text(4), static_cast<int>(ready_lanes_.column_int(5)) + 1});
  }
  ready_lanes_.reset();
  for (const auto& c : claimed) {
    mark_in_flight_.bind(1, c.seq).bind(2, now_ms);
    mark_in_flight_.step();
    mark_in_flight_.reset();
    clear_ready_.bind(1, c.patient_key);
    clear_ready_.step();
    clear_ready_.reset();
  }
  tx.commit();
  return claimed;
}

void sqlite_outbox::settle(const claimed_record& record, const attempt_report& report,
                           std::int64_t now_ms) {
  using result = attempt_report::result;
  std::string_view state = "delivered";
  switch (report.what) {
    case result::delivered: state = "delivered"; break;
    case result::dead: state = "dead"; break;
    case result::retry: state = "retry_scheduled"; break;
    case result::held: state = "held"; break;
    case result::released: state = "retry_scheduled"; break;  // not attempted: the count is undone
  }
  sqlite::transaction tx(db_);
  settle_record_.bind(1, record.seq).bind(2, state);
  const bool waits = report.what == result::retry || report.what == result::released;
  waits ? settle_record_.bind(3, report.retry_at_ms) : settle_record_.bind_null(3);
  report.error.empty() ? settle_record_.bind_null(4) : settle_record_.bind(4, report.error);
  report.ehr_response.empty() ? settle_record_.bind_null(5) : settle_record_.bind(5, report.ehr_response);
  // Released and held records were not sent: their claim does not count as an attempt.
  const bool not_sent = report.what == result::released || report.what == result::held;
  settle_record_.bind(6, static_cast<std::int64_t>(not_sent ? 1 : 0));
  settle_record_.bind(7, now_ms);
  settle_record_.step();
  settle_record_.reset();
  if (report.what == result::delivered) {
    // A delivered procedure may be what a held follow-up of this patient waits for.
    release_held_.bind(1, record.patient_key).bind(2, now_ms);
    release_held_.step();
    release_held_.reset();
  }
  refresh_lane(record.patient_key, now_ms);
  tx.commit();
}

int sqlite_outbox::recover_in_flight(std::int64_t now_ms) {
  sqlite::transaction tx(db_);
  // A record in flight is always its lane's head, with the lane not ready.
  std::vector<std::pair<std::string, std::int64_t>> stuck;
  {
    sqlite::statement heads(db_.handle(),
                            "SELECT l.patient_key, l.head_seq FROM lanes l JOIN records r ON r.seq = l.head_seq "
                            "WHERE l.ready_at IS NULL AND r.state = 'in_flight'");
    while (heads.step()) stuck.emplace_back(heads.column_text(0), heads.column_int(1));
  }
  sqlite::statement back(db_.handle(), "UPDATE records SET state = 'pending' WHERE seq = ?1");
  for (const auto& [patient, seq] : stuck) {
    back.bind(1, seq);
    back.step();
    back.reset();
  }
  const int recovered = static_cast<int>(stuck.size());
  std::vector<std::string> patients;
  for (const auto& [patient, seq] : stuck) patients.push_back(patient);
  for (const auto& p : patients) refresh_lane(p, now_ms);
  tx.commit();
  return recovered;
}

std::vector<dead_letter> sqlite_outbox::replay(const std::string& record_id, const std::string& reason,
                                               const std::string& who, bool dry_run, std::int64_t now_ms) {
  sqlite::transaction tx(db_);
  sqlite::statement select(db_.handle(),
                           "SELECT seq, record_id, revision, patient_key, COALESCE(last_error, '') FROM records "
                           "WHERE state = 'dead' AND (?1 = '' OR record_id = ?1) ORDER BY seq");
  select.bind(1, record_id);
  struct row {
    std::int64_t seq;
    dead_letter letter;
    std::string patient_key;
  };
  std::vector<row> rows;
  while (select.step()) {
    rows.push_back({select.column_int(0),
                    {select.column_text(1), static_cast<int>(select.column_int(2)), select.column_text(4)},
                    select.column_text(3)});
  }
  std::vector<dead_letter> letters;
  sqlite::statement requeue(db_.handle(),
                            "UPDATE records SET state = 'pending', attempts = 0, last_error = NULL, "
                            "next_attempt_at = NULL, updated_at = ?2 WHERE seq = ?1");
  sqlite::statement audit(db_.handle(),
                          "INSERT INTO replays (record_id, revision, previous_error, reason, requested_by, at) "
                          "VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
  for (const auto& r : rows) {
    letters.push_back(r.letter);
    if (dry_run) continue;
    requeue.bind(1, r.seq).bind(2, now_ms);
    requeue.step();
    requeue.reset();
    audit.bind(1, r.letter.record_id).bind(2, static_cast<std::int64_t>(r.letter.revision));
    audit.bind(3, r.letter.last_error).bind(4, reason).bind(5, who).bind(6, now_ms);
    audit.step();
    audit.reset();
    refresh_lane(r.patient_key, now_ms);
  }
  tx.commit();
  return letters;
}

std::vector<std::string> sqlite_outbox::delivered_bodies(const std::string& patient_key) {
  std::vector<std::string> bodies;
  delivered_bodies_.bind(1, patient_key);
  while (delivered_bodies_.step()) bodies.push_back(delivered_bodies_.column_text(0));
  delivered_bodies_.reset();
  return bodies;
}

std::vector<enqueue_result> sqlite_outbox::enqueue(const std::vector<inbound_record>& records,
                                                   const std::vector<quarantined_record>& quarantined,
                                                   std::int64_t now_ms, std::string_view intake_id) {
  std::vector<enqueue_result> results;
  results.reserve(records.size());
  sqlite::transaction tx(db_);
  for (const auto& r : records) {
    latest_revision_.bind(1, r.record_id);
    latest_revision_.step();
    const bool known = !latest_revision_.column_is_null(0);
    const std::int64_t latest = known ? latest_revision_.column_int(0) : 0;
    latest_revision_.reset();
    if (known && latest == r.revision) {
      results.push_back(enqueue_result::duplicate);
      continue;
    }
    if (known && latest > r.revision) {
      results.push_back(enqueue_result::stale);
      continue;
    }
    bool superseding = false;
    if (known) {
      supersede_older_.bind(1, r.record_id).bind(2, now_ms);
      supersede_older_.step();
      supersede_older_.reset();
      superseding = db_.changes() > 0;
    }
    insert_record_.bind(1, r.record_id)
        .bind(2, static_cast<std::int64_t>(r.revision))
        .bind(3, r.record_type)
        .bind(4, r.patient_key)
        .bind(5, r.body)
        .bind(6, now_ms);
    insert_record_.step();
    insert_record_.reset();
    if (superseding) {
      refresh_lane(r.patient_key, now_ms);  // the superseded revision may have headed the lane
    } else {
      join_lane_.bind(1, r.patient_key).bind(2, db_.last_insert_id()).bind(3, now_ms);
      join_lane_.step();
      join_lane_.reset();
    }
    results.push_back(superseding ? enqueue_result::accepted_superseding : enqueue_result::accepted);
  }
  for (const auto& q : quarantined) {
    insert_quarantined_.bind(1, q.source);
    if (q.record_id.empty()) {
      insert_quarantined_.bind_null(2);
    } else {
      insert_quarantined_.bind(2, q.record_id);
    }
    insert_quarantined_.bind(3, q.body).bind(4, problems_json(q.problems)).bind(5, now_ms);
    insert_quarantined_.step();
    insert_quarantined_.reset();
  }
  if (!intake_id.empty()) {
    note_intake_.bind(1, std::string(intake_id)).bind(2, now_ms);
    note_intake_.step();
    note_intake_.reset();
  }
  tx.commit();  // synchronous=FULL: durable when this returns
  return results;
}

outbox_status sqlite_outbox::status(std::int64_t now_ms) {
  outbox_status s;
  for (auto state : all_states) s.records[state] = 0;
  sqlite::statement counts(db_.handle(), "SELECT state, COUNT(*) FROM records GROUP BY state");
  while (counts.step()) {
    const std::string name = counts.column_text(0);
    for (auto state : all_states) {
      if (to_string(state) == name) s.records[state] = counts.column_int(1);
    }
  }
  sqlite::statement quarantine(db_.handle(), "SELECT COUNT(*) FROM quarantine");
  quarantine.step();
  s.quarantined = quarantine.column_int(0);
  sqlite::statement oldest(db_.handle(),
                           "SELECT MIN(r.received_at) FROM lanes l JOIN records r ON r.seq = l.head_seq "
                           "WHERE r.state IN ('pending', 'retry_scheduled', 'in_flight')");  // every lane's oldest undelivered
  oldest.step();
  if (!oldest.column_is_null(0)) s.oldest_pending_age_ms = now_ms - oldest.column_int(0);
  sqlite::statement error(db_.handle(),
                          "SELECT last_error FROM records WHERE last_error IS NOT NULL "
                          "ORDER BY updated_at DESC LIMIT 1");
  if (error.step()) s.last_error = error.column_text(0);
  sqlite::statement contact(db_.handle(),
                             "SELECT reached, detail, at, unreachable_since FROM ehr_contact WHERE id = 1");
  if (contact.step()) {
    s.ehr_reached = contact.column_int(0) != 0;
    s.ehr_detail = contact.column_text(1);
    s.ehr_last_contact_ms = contact.column_int(2);
    if (!contact.column_is_null(3)) s.ehr_unreachable_since_ms = contact.column_int(3);
  }
  return s;
}

bool sqlite_outbox::intake_seen(std::string_view intake_id) {
  sqlite::statement seen(db_.handle(), "SELECT 1 FROM intakes WHERE intake_id = ?1");
  seen.bind(1, std::string(intake_id));
  return seen.step();
}

namespace {

constexpr const char* summary_columns =
    "SELECT record_id, revision, record_type, state, attempts, COALESCE(last_error, ''), "
    "COALESCE(ehr_response, ''), patient_key, received_at, updated_at FROM records ";

record_summary read_summary(sqlite::statement& row) {
  record_summary r;
  r.record_id = row.column_text(0);
  r.revision = static_cast<int>(row.column_int(1));
  r.record_type = row.column_text(2);
  const std::string state = row.column_text(3);
  for (auto s : all_states) {
    if (to_string(s) == state) r.state = s;
  }
  r.attempts = static_cast<int>(row.column_int(4));
  r.last_error = row.column_text(5);
  r.ehr_response = row.column_text(6);
  r.patient_key = row.column_text(7);
  r.received_at_ms = row.column_int(8);
  r.updated_at_ms = row.column_int(9);
  return r;
}

}  // namespace

std::vector<record_summary> sqlite_outbox::records_in_state(record_state state, int limit) {
  // "dead" goes through its partial index; the other states scan in arrival order up to the limit.
  sqlite::statement rows(db_.handle(), std::string(summary_columns) + "WHERE state = ?1 ORDER BY seq LIMIT ?2");
  rows.bind(1, to_string(state)).bind(2, static_cast<std::int64_t>(limit));
  std::vector<record_summary> found;
  while (rows.step()) found.push_back(read_summary(rows));
  return found;
}

std::vector<record_summary> sqlite_outbox::record_history(const std::string& record_id) {
  sqlite::statement rows(db_.handle(), std::string(summary_columns) + "WHERE record_id = ?1 ORDER BY revision");
  rows.bind(1, record_id);
  std::vector<record_summary> found;
  while (rows.step()) found.push_back(read_summary(rows));
  return found;
}

std::vector<quarantine_entry> sqlite_outbox::quarantined(int limit) {
  sqlite::statement rows(db_.handle(),
                         "SELECT id, source, COALESCE(record_id, ''), problems, received_at FROM quarantine "
                         "ORDER BY id DESC LIMIT ?1");
  rows.bind(1, static_cast<std::int64_t>(limit));
  std::vector<quarantine_entry> found;
  while (rows.step()) {
    found.push_back({rows.column_int(0), rows.column_text(1), rows.column_text(2), rows.column_text(3), rows.column_int(4)});
  }
  return found;
}

bool sqlite_outbox::writable() {
  try {
    db_.exec("BEGIN IMMEDIATE");
    db_.exec("ROLLBACK");
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

std::vector<open_alert> sqlite_outbox::open_alerts() {
  sqlite::statement rows(db_.handle(), "SELECT key, detail, opened_at FROM alerts ORDER BY opened_at, key");
  std::vector<open_alert> found;
  while (rows.step()) found.push_back({rows.column_text(0), rows.column_text(1), rows.column_int(2)});
  return found;
}

void sqlite_outbox::set_alert(const open_alert& alert, bool open) {
  if (open) {
    sqlite::statement upsert(db_.handle(),
                             "INSERT INTO alerts (key, detail, opened_at) VALUES (?1, ?2, ?3) "
                             "ON CONFLICT (key) DO UPDATE SET detail = ?2");
    upsert.bind(1, alert.key).bind(2, alert.detail).bind(3, alert.opened_at_ms);
    upsert.step();
  } else {
    sqlite::statement remove(db_.handle(), "DELETE FROM alerts WHERE key = ?1");
    remove.bind(1, alert.key);
    remove.step();
  }
}

}  // namespace connector
