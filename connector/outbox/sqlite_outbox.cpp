// SQLite schema and statements of the outbox.
#include "connector/outbox/sqlite_outbox.h"

#include <array>

#include "fhir/json_writer.h"

namespace connector {
namespace {

constexpr std::array<record_state, 6> all_states = {
    record_state::pending,   record_state::in_flight, record_state::retry_scheduled,
    record_state::delivered, record_state::dead,      record_state::superseded};

// One row per received revision; seq is the arrival order that lanes follow. The partial index
// keeps "what is next for this patient" a lookup, not a scan, however long the delivered history.
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
CREATE INDEX IF NOT EXISTS records_open_by_lane ON records (patient_key, seq)
  WHERE state IN ('pending', 'in_flight', 'retry_scheduled');
CREATE INDEX IF NOT EXISTS records_by_state ON records (state, received_at);
CREATE TABLE IF NOT EXISTS quarantine (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  source TEXT NOT NULL,
  record_id TEXT,
  body TEXT NOT NULL,
  problems TEXT NOT NULL,
  received_at INTEGER NOT NULL
);
PRAGMA user_version = 1;
)sql";

sqlite::database& open(sqlite::database& db, bool full_sync) {
  db.exec("PRAGMA journal_mode = WAL");
  db.exec(full_sync ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL");
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
      insert_quarantined_(db_.handle(),
                          "INSERT INTO quarantine (source, record_id, body, problems, received_at) "
                          "VALUES (?1, ?2, ?3, ?4, ?5)") {}

std::vector<enqueue_result> sqlite_outbox::enqueue(const std::vector<inbound_record>& records,
                                                   const std::vector<quarantined_record>& quarantined,
                                                   std::int64_t now_ms) {
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
                           "SELECT MIN(received_at) FROM records WHERE state IN ('pending', "
                           "'retry_scheduled')");
  oldest.step();
  if (!oldest.column_is_null(0)) s.oldest_pending_age_ms = now_ms - oldest.column_int(0);
  sqlite::statement error(db_.handle(),
                          "SELECT last_error FROM records WHERE last_error IS NOT NULL "
                          "ORDER BY updated_at DESC LIMIT 1");
  if (error.step()) s.last_error = error.column_text(0);
  return s;
}

}  // namespace connector
