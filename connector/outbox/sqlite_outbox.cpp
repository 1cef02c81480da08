// SQLite schema, migrations and statements of the outbox.
#include "connector/outbox/sqlite_outbox.h"

#include <sqlite3.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>


namespace connector {
namespace {


// The schema as issue 4 left it (version 5): every store is created through it and then migrated.
// One row per received revision; seq is the arrival order that lanes follow.
constexpr const char* schema_v5 = R"sql(
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
)sql";

// Version 6: claims with an owner, a lease and a fencing token; owners; "possibly at the EHR";
// the store's facts (the patient key's fingerprint). Every step may run again: a connector of
// version 5 opening this store sets its version back to 5 (it writes user_version on every open).
constexpr std::array<std::pair<const char*, const char*>, 4> columns_6 = {{
    {"claim_owner", "INTEGER"},
    {"claim_token", "INTEGER NOT NULL DEFAULT 0"},
    {"lease_until", "INTEGER"},
    // Sent without an answer that says what became of it: the EHR may hold this revision.
    {"maybe_at_ehr", "INTEGER NOT NULL DEFAULT 0"},
}};
constexpr const char* schema_6 = R"sql(
-- Few records are in flight or possibly at the EHR: partial indexes cost nothing for the others.
CREATE INDEX IF NOT EXISTS records_in_flight ON records (seq) WHERE state = 'in_flight';
CREATE INDEX IF NOT EXISTS records_maybe_at_ehr ON records (seq) WHERE maybe_at_ehr = 1;
-- Processes registered to claim records; each proves it lives by a lock on the owners file.
CREATE TABLE IF NOT EXISTS owners (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  kind TEXT NOT NULL,
  pid INTEGER NOT NULL,
  started_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
PRAGMA user_version = 6;
)sql";

void migrate_5_to_6(sqlite::database& db) {
  for (const auto& [column, declaration] : columns_6) {
    sqlite::statement has(db.handle(), "SELECT 1 FROM pragma_table_info('records') WHERE name = ?1");
    has.bind(1, column);
    if (!has.step()) db.exec(std::string("ALTER TABLE records ADD COLUMN ") + column + " " + declaration);
  }
  db.exec(schema_6);
}

// Version 7: the ledger of resources written one request at a time (write mode single or batch).
constexpr const char* schema_7 = R"sql(
CREATE TABLE IF NOT EXISTS ledger (
  resource_type TEXT NOT NULL,
  key_system TEXT NOT NULL,
  key_value TEXT NOT NULL,
  record_id TEXT NOT NULL,
  ehr_id TEXT NOT NULL,          -- '' : sent without a recorded answer (in doubt)
  version TEXT NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (resource_type, key_system, key_value)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ledger_by_record ON ledger (record_id);
PRAGMA user_version = 7;
)sql";

int user_version(sqlite::database& db) {
  sqlite::statement v(db.handle(), "PRAGMA user_version");
  return v.step() ? static_cast<int>(v.column_int(0)) : 0;
}

void open_once(sqlite::database& db, const std::string& path, const sqlite_options& options);

// Opens the connection and brings the schema to this build's version, in one transaction. Two
// processes opening a new store at once can find it locked in ways SQLite's busy handler does
// not wait for (turning a new file to WAL takes an exclusive lock): wait and try again.
sqlite::database& open(sqlite::database& db, const std::string& path, const sqlite_options& options) {
  const auto give_up = std::chrono::steady_clock::now() +
                       std::chrono::milliseconds(std::int64_t{options.busy_timeout_ms} * options.busy_attempts);
  for (;;) {
    try {
      open_once(db, path, options);
      return db;
    } catch (const sqlite::sqlite_error& e) {
      if (!e.busy() || std::chrono::steady_clock::now() > give_up) throw;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
}

void open_once(sqlite::database& db, const std::string& path, const sqlite_options& options) {
  db.exec("PRAGMA journal_mode = WAL");
  db.exec(options.full_sync ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL");
  // 32 MB of page cache keeps the indexes' interior pages resident with a large backlog, so a
  // lookup costs the same with a million records waiting as with a thousand.
  db.exec("PRAGMA cache_size = -32768");
  if (user_version(db) == sqlite_schema_version) return;
  sqlite::transaction tx(db);
  const int version = user_version(db);  // again, under the write lock: another process may have migrated
  if (version > sqlite_schema_version) {
    throw store_error(store_error::kind::other,
                      "the store " + path + " has schema version " + std::to_string(version) +
                          ", newer than this connector's (" + std::to_string(sqlite_schema_version) +
                          "): run the newer connector, or restore a backup taken before the upgrade");
  }
  if (version < sqlite_schema_version) {
    if (version == 4) db.exec("ALTER TABLE ehr_contact ADD COLUMN unreachable_since INTEGER");  // issue 3's stores
    if (version <= 5) db.exec(schema_v5);
    if (version <= 6) migrate_5_to_6(db);
    db.exec(schema_7);
  }
  tx.commit();
}

store_error::kind kind_of(const sqlite::sqlite_error& e) {
  if (e.busy()) return store_error::kind::busy;
  switch (e.code) {
    case SQLITE_FULL: return store_error::kind::full;
    case SQLITE_READONLY:
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_PERM: return store_error::kind::unwritable;
    default: return store_error::kind::other;
  }
}

store_error translate(const std::string& path, const sqlite::sqlite_error& e, bool outcome_unknown = false) {
  const auto kind = kind_of(e);
  if (kind == store_error::kind::full) {
    return store_error(kind, "store " + path + " is full: its disk has no space left", outcome_unknown);
  }
  return store_error(kind, "store " + path + ": " + e.what(), outcome_unknown);
}

// Why the last write to a store, on any of this process's connections, failed when it failed
// for want of space or of permission (a full or read-only disk): /readyz and the alerts say so
// until a write succeeds again, since a small probe may still get through.
std::mutex failing_stores_mutex;
std::map<std::string, std::string> failing_stores;  // path -> why, for people
std::atomic<int> failing_store_count{0};            // lets every successful write skip the lock

void note_write(const std::string& path, const std::optional<std::string>& failure) {
  if (!failure && failing_store_count.load(std::memory_order_relaxed) == 0) return;
  std::lock_guard lock(failing_stores_mutex);
  if (failure) {
    failing_stores[path] = *failure;
  } else {
    failing_stores.erase(path);
  }
  failing_store_count.store(static_cast<int>(failing_stores.size()), std::memory_order_relaxed);
}

std::optional<std::string> last_write_failure(const std::string& path) {
  std::lock_guard lock(failing_stores_mutex);
  const auto it = failing_stores.find(path);
  if (it == failing_stores.end()) return std::nullopt;
  return it->second;
}

// Below this much free space on the store's file system a write is likely to fail: SQLite needs
// room for the write-ahead log's frames and a checkpoint.
constexpr std::uint64_t min_free_bytes = 256 * 1024;

}  // namespace

template <typename Work>
auto sqlite_outbox::write(std::string_view operation, Work work) -> decltype(work()) {
  for (int attempt = 1;; ++attempt) {
    bool outcome_unknown = false;
    try {
      sqlite::transaction tx(db_);
      auto commit = [&] {
        try {
          tx.commit();
        } catch (const sqlite::sqlite_error&) {
          // Still open: the destructor rolls it back. Ended: committed, or rolled back by SQLite.
          outcome_unknown = sqlite3_get_autocommit(db_.handle()) != 0;
          throw;
        }
      };
      if constexpr (std::is_void_v<decltype(work())>) {
        work();
        commit();
        note_write(path_, std::nullopt);
        return;
      } else {
        auto result = work();
        commit();
        note_write(path_, std::nullopt);
        return result;
      }
    } catch (const sqlite::sqlite_error& e) {
      const store_error failure = translate(path_, e, outcome_unknown);
      if (failure.failure == store_error::kind::full || failure.failure == store_error::kind::unwritable) {
        note_write(path_, failure.what());
      }
      if (!e.busy() || outcome_unknown) throw failure;
      ++busy_waits_;
      if (options_.on_busy) options_.on_busy(operation, attempt);
      if (attempt >= options_.busy_attempts) throw translate(path_, e);
    }
  }
}

template <typename Work>
auto sqlite_outbox::read(Work work) -> decltype(work()) {
  try {
    return work();
  } catch (const sqlite::sqlite_error& e) {
    db_.reset_all();
    throw translate(path_, e);
  }
}

// A function-try-block: a store that cannot be opened or migrated is a store_error like any other.
sqlite_outbox::sqlite_outbox(const std::string& path, sqlite_options options) try
    : path_(path),
      options_(std::move(options)),
      db_(path, options_.busy_timeout_ms),
      locks_(path),
      latest_revision_(open(db_, path_, options_).handle(),
                       "SELECT revision, patient_key FROM records WHERE record_id = ?1 ORDER BY revision DESC LIMIT 1"),
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
      lane_in_flight_(db_.handle(),
                      "SELECT seq FROM records WHERE patient_key = ?1 AND state = 'in_flight' LIMIT 1"),
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
                   "SELECT l.patient_key, r.seq, r.record_id, r.revision, r.body, r.attempts, r.claim_token, r.received_at "
                   "FROM lanes l JOIN records r ON r.seq = l.head_seq "
                   "WHERE l.ready_at IS NOT NULL AND l.ready_at <= ?1 ORDER BY l.ready_at LIMIT ?2"),
      mark_in_flight_(db_.handle(),
                      "UPDATE records SET state = 'in_flight', attempts = attempts + 1, updated_at = ?2, "
                      "claim_owner = ?3, claim_token = ?4, lease_until = ?5 "
                      "WHERE seq = ?1 AND state IN ('pending', 'retry_scheduled')"),
      clear_ready_(db_.handle(), "UPDATE lanes SET ready_at = NULL WHERE patient_key = ?1"),
      // Counts only while the claim holds: the fencing token refuses a holder that was taken over.
      settle_record_(db_.handle(),
                     "UPDATE records SET state = ?2, next_attempt_at = ?3, last_error = ?4, "
                     "ehr_response = COALESCE(?5, ehr_response), attempts = attempts - ?6, updated_at = ?7, "
                     "claim_owner = NULL, lease_until = NULL, maybe_at_ehr = "
                     "CASE WHEN ?2 = 'delivered' THEN 0 WHEN ?8 = 1 THEN 1 ELSE maybe_at_ehr END "
                     "WHERE seq = ?1 AND state = 'in_flight' AND claim_token = ?9"),
      renew_claim_(db_.handle(),
                   "UPDATE records SET lease_until = ?3 WHERE seq = ?1 AND claim_token = ?2 AND state = 'in_flight'"),
      release_held_(db_.handle(),
                    "UPDATE records SET state = 'pending', updated_at = ?2 "
                    "WHERE patient_key = ?1 AND state = 'held'"),
      history_(db_.handle(),
               "SELECT body FROM records WHERE patient_key = ?1 AND (state = 'delivered' OR maybe_at_ehr = 1) "
               "AND seq <> ?2 ORDER BY seq"),
      note_contact_(db_.handle(),
                    "INSERT INTO ehr_contact (id, reached, detail, at, unreachable_since) "
                    "VALUES (1, ?1, ?2, ?3, CASE WHEN ?1 = 1 THEN NULL ELSE ?3 END) "
                    "ON CONFLICT (id) DO UPDATE SET reached = ?1, detail = ?2, at = ?3, unreachable_since = "
                    "CASE WHEN ?1 = 1 THEN NULL ELSE COALESCE(ehr_contact.unreachable_since, ?3) END"),
      note_intake_(db_.handle(), "INSERT OR IGNORE INTO intakes (intake_id, at) VALUES (?1, ?2)") {
} catch (const sqlite::sqlite_error& e) {
  throw store_error(kind_of(e), std::string(e.what()).find(path) == std::string::npos ? "store " + path + ": " + e.what()
                                                                                        : std::string(e.what()));
} catch (const store_error&) {
  throw;
} catch (const std::runtime_error& e) {  // the owners lock file
  throw store_error(store_error::kind::unwritable, "store " + path + ": " + e.what());
}

void sqlite_outbox::fail_after_steps(std::int64_t vm_steps) {
  steps_to_failure_ = vm_steps;
  if (vm_steps <= 0) {
    sqlite3_progress_handler(db_.handle(), 0, nullptr, nullptr);
    return;
  }
  sqlite3_progress_handler(
      db_.handle(), 1,
      [](void* self) -> int {
        auto& left = static_cast<sqlite_outbox*>(self)->steps_to_failure_;
        return --left == 0 ? 1 : 0;  // non-zero interrupts the statement running now
      },
      this);
}

void sqlite_outbox::record_contact(const ehr_contact& contact, std::int64_t now_ms) {
  sqlite::reset_on_exit done(note_contact_);
  note_contact_.bind(1, static_cast<std::int64_t>(contact.reached ? 1 : 0)).bind(2, contact.detail).bind(3, now_ms);
  note_contact_.step();
}

void sqlite_outbox::note_ehr_contact(const ehr_contact& contact, std::int64_t now_ms) {
  write("note the EHR contact", [&] { record_contact(contact, now_ms); });
}

void sqlite_outbox::refresh_lane(const std::string& patient_key, std::int64_t now_ms) {
  std::optional<std::int64_t> head, ready;
  bool pending = false;
  {
    // One record of a patient in flight at a time, whatever else becomes open meanwhile (a dead
    // letter replayed, say): while one is out, it heads the lane and the lane is not ready.
    sqlite::reset_on_exit done(lane_in_flight_);
    lane_in_flight_.bind(1, patient_key);
    if (lane_in_flight_.step()) head = lane_in_flight_.column_int(0);
  }
  if (!head) {
    sqlite::reset_on_exit done(lane_head_);
    lane_head_.bind(1, patient_key);
    if (lane_head_.step()) {
      head = lane_head_.column_int(0);
      const std::string state = lane_head_.column_text(1);
      pending = state == "pending";
      if (pending) ready = now_ms;
      if (state == "retry_scheduled") ready = lane_head_.column_int(2);
    }
  }
  sqlite::reset_on_exit done(set_lane_);
  set_lane_.bind(1, patient_key);
  head ? set_lane_.bind(2, *head) : set_lane_.bind_null(2);
  ready ? set_lane_.bind(3, *ready) : set_lane_.bind_null(3);
  set_lane_.bind(4, static_cast<std::int64_t>(pending ? 1 : 0));
  set_lane_.step();
}

std::optional<std::string> sqlite_outbox::patient_key_fingerprint() {
  return read([&]() -> std::optional<std::string> {
    sqlite::statement q(db_.handle(), "SELECT value FROM meta WHERE key = 'patient_key_fingerprint'");
    if (q.step()) return q.column_text(0);
    return std::nullopt;
  });
}

void sqlite_outbox::record_patient_key_fingerprint(const std::string& fingerprint) {
  const std::string recorded = write("record the patient key", [&] {
    sqlite::statement q(db_.handle(),
                        "INSERT OR IGNORE INTO meta (key, value) VALUES ('patient_key_fingerprint', ?1)");
    q.bind(1, fingerprint);
    q.step();
    sqlite::statement read(db_.handle(), "SELECT value FROM meta WHERE key = 'patient_key_fingerprint'");
    return read.step() ? read.column_text(0) : fingerprint;
  });
  // Two processes starting on a new store with two keys: the second learns it lost here.
  if (recorded != fingerprint) {
    throw store_error(store_error::kind::other, "store " + path_ + " was just created with another patient key "
                                                "(fingerprint " + recorded + "): use that key");
  }
}

bool sqlite_outbox::holds_records() {
  return read([&] {
    sqlite::statement q(db_.handle(),
                        "SELECT EXISTS (SELECT 1 FROM records) OR EXISTS (SELECT 1 FROM quarantine) "
                        "OR EXISTS (SELECT 1 FROM lanes)");
    return q.step() && q.column_int(0) != 0;
  });
}

std::int64_t sqlite_outbox::register_owner(std::string_view kind, std::int64_t now_ms) {
  const bool daemon = kind == "daemon";
  const std::int64_t id = write("register", [&] {
    if (daemon && !locks_.try_lock(owner_locks::daemon_slot)) {
      std::string running = "another daemon";
      sqlite::statement q(db_.handle(), "SELECT pid FROM owners WHERE kind = 'daemon' ORDER BY id DESC LIMIT 1");
      if (q.step()) running += " (pid " + std::to_string(q.column_int(0)) + ")";
      throw store_error(store_error::kind::other,
                        running + " is running on the store " + path_ +
                            ": one daemon per SQLite store (sync --once may run beside it)");
    }
    sqlite::statement insert(db_.handle(), "INSERT INTO owners (kind, pid, started_at) VALUES (?1, ?2, ?3)");
    insert.bind(1, kind).bind(2, static_cast<std::int64_t>(::getpid())).bind(3, now_ms);
    insert.step();
    const std::int64_t owner = db_.last_insert_id();
    // Taken before the row is committed, so nobody ever sees this owner without its lock.
    if (!locks_.try_lock(owner)) {
      throw store_error(store_error::kind::other, "store " + path_ + ": cannot lock owner slot " + std::to_string(owner));
    }
    return owner;
  });
  own_owners_.insert(id);
  return id;
}

void sqlite_outbox::release_owner(std::int64_t owner, std::int64_t now_ms) {
  write("release", [&] {
    std::vector<std::string> patients;
    {
      sqlite::statement held(db_.handle(),
                             "SELECT DISTINCT patient_key FROM records WHERE state = 'in_flight' AND claim_owner = ?1");
      held.bind(1, owner);
      while (held.step()) patients.push_back(held.column_text(0));
    }
    sqlite::statement back(db_.handle(),
                           "UPDATE records SET state = 'pending', claim_owner = NULL, lease_until = NULL, "
                           "claim_token = claim_token + 1, maybe_at_ehr = 1, updated_at = ?2 "
                           "WHERE state = 'in_flight' AND claim_owner = ?1");
    back.bind(1, owner).bind(2, now_ms);
    back.step();
    for (const auto& p : patients) refresh_lane(p, now_ms);
    sqlite::statement remove(db_.handle(), "DELETE FROM owners WHERE id = ?1");
    remove.bind(1, owner);
    remove.step();
  });
  locks_.unlock(owner);
  own_owners_.erase(owner);
  locks_.unlock(owner_locks::daemon_slot);  // a no-op for anyone but the daemon
}

std::vector<claimed_record> sqlite_outbox::claim(std::int64_t owner, std::int64_t now_ms, std::int64_t lease_ms,
                                                 int limit) {
  return write("claim", [&] {
    std::vector<claimed_record> claimed;
    {
      sqlite::reset_on_exit done(ready_lanes_);
      ready_lanes_.bind(1, now_ms).bind(2, static_cast<std::int64_t>(limit));
      while (ready_lanes_.step()) {
        claimed_record c;
        c.patient_key = ready_lanes_.column_text(0);
        c.seq = ready_lanes_.column_int(1);
        c.record_id = ready_lanes_.column_text(2);
        c.revision = static_cast<int>(ready_lanes_.column_int(3));
        c.body = ready_lanes_.column_text(4);
        c.attempts = static_cast<int>(ready_lanes_.column_int(5)) + 1;
        c.token = ready_lanes_.column_int(6) + 1;
        c.received_at_ms = ready_lanes_.column_int(7);
        c.owner = owner;
        c.lease_until_ms = now_ms + lease_ms;
        claimed.push_back(std::move(c));
      }
    }
    std::vector<claimed_record> taken;
    for (auto& c : claimed) {
      {
        sqlite::reset_on_exit done(mark_in_flight_);
        mark_in_flight_.bind(1, c.seq).bind(2, now_ms).bind(3, owner).bind(4, c.token).bind(5, c.lease_until_ms);
        mark_in_flight_.step();
      }
      if (db_.changes() == 0) {  // the lane pointed at a record no longer open: put the lane right
        refresh_lane(c.patient_key, now_ms);
        continue;
      }
      sqlite::reset_on_exit done(clear_ready_);
      clear_ready_.bind(1, c.patient_key);
      clear_ready_.step();
      taken.push_back(std::move(c));
    }
    return taken;
  });
}

std::vector<std::int64_t> sqlite_outbox::renew(const std::vector<claimed_record>& claims, std::int64_t now_ms,
                                               std::int64_t lease_ms) {
  if (claims.empty()) return {};
  return write("renew", [&] {
    std::vector<std::int64_t> lost;
    for (const auto& c : claims) {
      sqlite::reset_on_exit done(renew_claim_);
      renew_claim_.bind(1, c.seq).bind(2, c.token).bind(3, now_ms + lease_ms);
      renew_claim_.step();
      if (db_.changes() == 0) lost.push_back(c.seq);
    }
    return lost;
  });
}

bool sqlite_outbox::settle(const claimed_record& record, const attempt_report& report, std::int64_t now_ms) {
  using result = attempt_report::result;
  return write("settle", [&] {
    {
      sqlite::reset_on_exit done(settle_record_);
      settle_record_.bind(1, record.seq).bind(2, state_after(report.what));
      const bool waits = report.what == result::retry || report.what == result::released;
      waits ? settle_record_.bind(3, report.retry_at_ms) : settle_record_.bind_null(3);
      report.error.empty() ? settle_record_.bind_null(4) : settle_record_.bind(4, report.error);
      report.ehr_response.empty() ? settle_record_.bind_null(5) : settle_record_.bind(5, report.ehr_response);
      // Released and held records were not sent: their claim does not count as an attempt.
      const bool not_sent = report.what == result::released || report.what == result::held;
      settle_record_.bind(6, static_cast<std::int64_t>(not_sent ? 1 : 0));
      settle_record_.bind(7, now_ms);
      settle_record_.bind(8, static_cast<std::int64_t>(report.maybe_at_ehr ? 1 : 0));
      settle_record_.bind(9, record.token);
      settle_record_.step();
    }
    if (db_.changes() == 0) {
      // Already recorded (this same settle, repeated after an unknown outcome), or taken over:
      // then the new holder's word counts, not ours.
      sqlite::statement q(db_.handle(), "SELECT state, claim_token FROM records WHERE seq = ?1");
      q.bind(1, record.seq);
      return q.step() && q.column_text(0) != "in_flight" && q.column_int(1) == record.token;
    }
    if (report.what == result::delivered) {
      // A delivered procedure may be what a held follow-up of this patient waits for.
      sqlite::reset_on_exit done(release_held_);
      release_held_.bind(1, record.patient_key).bind(2, now_ms);
      release_held_.step();
    }
    refresh_lane(record.patient_key, now_ms);
    if (report.contact) record_contact(*report.contact, now_ms);
    return true;
  });
}

std::vector<recovered_claim> sqlite_outbox::take_over(std::int64_t now_ms, std::int64_t horizon_ms,
                                                     const std::vector<claimed_record>& holding) {
  return write("take over", [&] {
    struct holder {
      std::string kind;
      std::int64_t pid = 0;
      bool alive = false;
    };
    std::map<std::int64_t, holder> owners;
    {
      sqlite::statement q(db_.handle(), "SELECT id, kind, pid FROM owners");
      while (q.step()) {
        const std::int64_t id = q.column_int(0);
        owners[id] = {q.column_text(1), q.column_int(2), own_owners_.count(id) > 0 || locks_.held_elsewhere(id)};
      }
    }
    struct stuck {
      std::int64_t seq;
      recovered_claim claim;
    };
    std::vector<stuck> taken;
    {
      sqlite::statement q(db_.handle(),
                          "SELECT seq, record_id, revision, patient_key, claim_owner, lease_until, claim_token "
                          "FROM records WHERE state = 'in_flight'");
      while (q.step()) {
        const auto found = q.column_is_null(4) ? owners.end() : owners.find(q.column_int(4));
        const bool gone = found == owners.end() || !found->second.alive;
        const std::int64_t until = q.column_is_null(5) ? 0 : q.column_int(5);
        // A lease further ahead than any lease is long: the wall clock stepped back.
        const bool expired = until <= now_ms || until > now_ms + horizon_ms;
        if (!gone && !expired) continue;
        if (!gone && own_owners_.count(q.column_int(4)) > 0) {
          // Ours: the caller knows what it holds and renews it; only a claim it does not know of
          // (its commit could not be confirmed) comes back, and only once its lease ran out.
          const std::int64_t seq = q.column_int(0), token = q.column_int(6);
          const bool held = std::any_of(holding.begin(), holding.end(),
                                        [&](const claimed_record& c) { return c.seq == seq && c.token == token; });
          if (held) continue;
        }
        std::string who = found == owners.end() ? std::string("a process of an earlier version")
                                                : found->second.kind + " pid " + std::to_string(found->second.pid);
        who += gone ? " (gone)" : " (its lease ran out)";
        taken.push_back({q.column_int(0),
                         {q.column_text(1), static_cast<int>(q.column_int(2)), q.column_text(3), std::move(who)}});
      }
    }
    // A new token: the old holder's settle, should it come, no longer counts.
    sqlite::statement back(db_.handle(),
                           "UPDATE records SET state = 'pending', claim_owner = NULL, lease_until = NULL, "
                           "claim_token = claim_token + 1, maybe_at_ehr = 1, updated_at = ?2, last_error = ?3 "
                           "WHERE seq = ?1");
    for (const auto& t : taken) {
      back.bind(1, t.seq).bind(2, now_ms).bind(3, "taken back from " + t.claim.holder + "; possibly at the EHR");
      back.step();
      back.reset();
      refresh_lane(t.claim.patient_key, now_ms);
    }
    sqlite::statement forget(db_.handle(), "DELETE FROM owners WHERE id = ?1");
    for (const auto& [id, h] : owners) {
      if (h.alive) continue;
      forget.bind(1, id);
      forget.step();
      forget.reset();
    }
    // Lanes due further ahead than any delay is long: the wall clock stepped back; due now.
    sqlite::statement clock(db_.handle(), "UPDATE lanes SET ready_at = ?1 WHERE ready_at > ?2");
    clock.bind(1, now_ms).bind(2, now_ms + horizon_ms);
    clock.step();
    std::vector<recovered_claim> recovered;
    for (auto& t : taken) recovered.push_back(std::move(t.claim));
    return recovered;
  });
}

std::vector<dead_letter> sqlite_outbox::replay(const std::string& record_id, const std::string& reason,
                                               const std::string& who, bool dry_run, std::int64_t now_ms) {
  return write("replay", [&] {
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
    return letters;
  });
}

std::vector<std::string> sqlite_outbox::history(const std::string& patient_key, std::int64_t except_seq) {
  return read([&] {
    std::vector<std::string> bodies;
    sqlite::reset_on_exit done(history_);
    history_.bind(1, patient_key).bind(2, except_seq);
    while (history_.step()) bodies.push_back(history_.column_text(0));
    return bodies;
  });
}

std::vector<enqueue_result> sqlite_outbox::enqueue(const std::vector<inbound_record>& records,
                                                   const std::vector<quarantined_record>& quarantined,
                                                   std::int64_t now_ms, std::string_view intake_id) {
  return write("store records", [&] {
    std::vector<enqueue_result> results;
    results.reserve(records.size());
    for (const auto& r : records) {
      std::optional<std::int64_t> latest;
      std::string latest_patient;
      {
        sqlite::reset_on_exit done(latest_revision_);
        latest_revision_.bind(1, r.record_id);
        if (latest_revision_.step()) {
          latest = latest_revision_.column_int(0);
          latest_patient = latest_revision_.column_text(1);
        }
      }
      if (latest && latest_patient != r.patient_key) {
        // Moving a record to another patient would split its history across two lanes and leave
        // its FHIR resources half with each: refused, kept in quarantine with the reason.
        const fhir::issues problem = {{fhir::severity::error, "business-rule", "patient.mrn",
                                       "names another patient than revision " + std::to_string(*latest) +
                                           " of this record: a record cannot move between patients; retract it "
                                           "(status entered-in-error) and send the corrected one under a new record_id"}};
        sqlite::reset_on_exit done(insert_quarantined_);
        insert_quarantined_.bind(1, "revision of another patient").bind(2, r.record_id).bind(3, r.body);
        insert_quarantined_.bind(4, problems_as_outcome(problem)).bind(5, now_ms);
        insert_quarantined_.step();
        results.push_back(enqueue_result::other_patient);
        continue;
      }
      if (latest && *latest == r.revision) {
        results.push_back(enqueue_result::duplicate);
        continue;
      }
      if (latest && *latest > r.revision) {
        results.push_back(enqueue_result::stale);
        continue;
      }
      bool superseding = false;
      if (latest) {
        sqlite::reset_on_exit done(supersede_older_);
        supersede_older_.bind(1, r.record_id).bind(2, now_ms);
        supersede_older_.step();
        superseding = db_.changes() > 0;
      }
      {
        sqlite::reset_on_exit done(insert_record_);
        insert_record_.bind(1, r.record_id)
            .bind(2, static_cast<std::int64_t>(r.revision))
            .bind(3, r.record_type)
            .bind(4, r.patient_key)
            .bind(5, r.body)
            .bind(6, now_ms);
        insert_record_.step();
      }
      if (superseding) {
        refresh_lane(r.patient_key, now_ms);  // the superseded revision may have headed the lane
      } else {
        sqlite::reset_on_exit done(join_lane_);
        join_lane_.bind(1, r.patient_key).bind(2, db_.last_insert_id()).bind(3, now_ms);
        join_lane_.step();
      }
      results.push_back(superseding ? enqueue_result::accepted_superseding : enqueue_result::accepted);
    }
    for (const auto& q : quarantined) {
      sqlite::reset_on_exit done(insert_quarantined_);
      insert_quarantined_.bind(1, q.source);
      if (q.record_id.empty()) {
        insert_quarantined_.bind_null(2);
      } else {
        insert_quarantined_.bind(2, q.record_id);
      }
      insert_quarantined_.bind(3, q.body).bind(4, problems_as_outcome(q.problems)).bind(5, now_ms);
      insert_quarantined_.step();
    }
    if (!intake_id.empty()) {
      sqlite::reset_on_exit done(note_intake_);
      note_intake_.bind(1, std::string(intake_id)).bind(2, now_ms);
      note_intake_.step();
    }
    return results;  // synchronous=FULL: durable once the commit returns
  });
}

void sqlite_outbox::note_write_strategy(const std::string& summary) {
  write("note the write strategy", [&] {
    sqlite::statement q(db_.handle(), "INSERT OR REPLACE INTO meta (key, value) VALUES ('write_strategy', ?1)");
    q.bind(1, summary);
    q.step();
  });
}

outbox_status sqlite_outbox::status(std::int64_t now_ms) {
  return read([&] {
    outbox_status s;
    {
      sqlite::statement w(db_.handle(), "SELECT value FROM meta WHERE key = 'write_strategy'");
      if (w.step()) s.write_strategy = w.column_text(0);
    }
    for (auto state : all_record_states) s.records[state] = 0;
    sqlite::statement counts(db_.handle(), "SELECT state, COUNT(*) FROM records GROUP BY state");
    while (counts.step()) {
      if (const auto state = record_state_named(counts.column_text(0))) s.records[*state] = counts.column_int(1);
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
    sqlite::statement maybe(db_.handle(), "SELECT COUNT(*) FROM records WHERE maybe_at_ehr = 1");
    maybe.step();
    s.maybe_at_ehr = maybe.column_int(0);
    sqlite::statement owners(db_.handle(),
                             "SELECT o.id, o.kind, o.pid, o.started_at, (SELECT COUNT(*) FROM records r "
                             "WHERE r.state = 'in_flight' AND r.claim_owner = o.id), (SELECT MAX(r.lease_until) FROM records r "
                             "WHERE r.state = 'in_flight' AND r.claim_owner = o.id) FROM owners o ORDER BY o.id");
    while (owners.step()) {
      owner_summary o;
      o.id = owners.column_int(0);
      o.kind = owners.column_text(1);
      o.pid = owners.column_int(2);
      o.started_at_ms = owners.column_int(3);
      o.alive = own_owners_.count(o.id) > 0 || locks_.held_elsewhere(o.id);
      o.claims = static_cast<int>(owners.column_int(4));
      if (!owners.column_is_null(5)) o.lease_until_ms = owners.column_int(5);
      if (o.kind == "daemon" && o.alive) o.leads = {"alerts"};  // the one daemon plays every role
      s.owners.push_back(std::move(o));
    }
    return s;
  });
}

std::vector<ledger_entry> sqlite_outbox::ledger_lookup(const std::vector<ledger_key>& keys) {
  return read([&] {
    std::vector<ledger_entry> found;
    sqlite::statement q(db_.handle(),
                        "SELECT record_id, ehr_id, version, updated_at FROM ledger "
                        "WHERE resource_type = ?1 AND key_system = ?2 AND key_value = ?3");
    for (const auto& k : keys) {
      sqlite::reset_on_exit done(q);
      q.bind(1, k.type).bind(2, k.system).bind(3, k.value);
      if (!q.step()) continue;
      found.push_back({k, q.column_text(0), q.column_text(1), q.column_text(2), q.column_int(3)});
    }
    return found;
  });
}

bool sqlite_outbox::ledger_record(const claimed_record& claim, const ledger_entry& entry, std::int64_t now_ms) {
  return write("ledger", [&] {
    sqlite::statement held(db_.handle(), "SELECT 1 FROM records WHERE seq = ?1 AND state = 'in_flight' AND claim_token = ?2");
    held.bind(1, claim.seq).bind(2, claim.token);
    if (!held.step()) return false;
    sqlite::statement w(db_.handle(),
                        "INSERT OR REPLACE INTO ledger (resource_type, key_system, key_value, record_id, ehr_id, version, "
                        "updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
    w.bind(1, entry.key.type).bind(2, entry.key.system).bind(3, entry.key.value).bind(4, claim.record_id);
    w.bind(5, entry.ehr_id).bind(6, entry.version).bind(7, now_ms);
    w.step();
    return true;
  });
}

std::vector<ledger_entry> sqlite_outbox::ledger_of_record(const std::string& record_id) {
  return read([&] {
    std::vector<ledger_entry> found;
    sqlite::statement q(db_.handle(),
                        "SELECT resource_type, key_system, key_value, ehr_id, version, updated_at FROM ledger "
                        "WHERE record_id = ?1 ORDER BY updated_at, resource_type");
    q.bind(1, record_id);
    while (q.step()) {
      found.push_back({{q.column_text(0), q.column_text(1), q.column_text(2)}, record_id, q.column_text(3),
                       q.column_text(4), q.column_int(5)});
    }
    return found;
  });
}

bool sqlite_outbox::intake_seen(std::string_view intake_id) {
  return read([&] {
    sqlite::statement seen(db_.handle(), "SELECT 1 FROM intakes WHERE intake_id = ?1");
    seen.bind(1, std::string(intake_id));
    return seen.step();
  });
}

namespace {

constexpr const char* summary_columns =
    "SELECT record_id, revision, record_type, state, attempts, COALESCE(last_error, ''), "
    "COALESCE(ehr_response, ''), patient_key, received_at, updated_at, maybe_at_ehr FROM records ";

record_summary read_summary(sqlite::statement& row) {
  record_summary r;
  r.record_id = row.column_text(0);
  r.revision = static_cast<int>(row.column_int(1));
  r.record_type = row.column_text(2);
  r.state = record_state_named(row.column_text(3)).value_or(record_state::pending);
  r.attempts = static_cast<int>(row.column_int(4));
  r.last_error = row.column_text(5);
  r.ehr_response = row.column_text(6);
  r.patient_key = row.column_text(7);
  r.received_at_ms = row.column_int(8);
  r.updated_at_ms = row.column_int(9);
  r.maybe_at_ehr = row.column_int(10) != 0;
  return r;
}

}  // namespace

std::vector<record_summary> sqlite_outbox::records_in_state(record_state state, int limit) {
  return read([&] {
    // "dead" and "in_flight" go through their partial indexes; the other states scan in arrival order up to the limit.
    sqlite::statement rows(db_.handle(), std::string(summary_columns) + "WHERE state = ?1 ORDER BY seq LIMIT ?2");
    rows.bind(1, to_string(state)).bind(2, static_cast<std::int64_t>(limit));
    std::vector<record_summary> found;
    while (rows.step()) found.push_back(read_summary(rows));
    return found;
  });
}

std::vector<record_summary> sqlite_outbox::record_history(const std::string& record_id) {
  return read([&] {
    sqlite::statement rows(db_.handle(), std::string(summary_columns) + "WHERE record_id = ?1 ORDER BY revision");
    rows.bind(1, record_id);
    std::vector<record_summary> found;
    while (rows.step()) found.push_back(read_summary(rows));
    return found;
  });
}

std::vector<quarantine_entry> sqlite_outbox::quarantined(int limit) {
  return read([&] {
    sqlite::statement rows(db_.handle(),
                           "SELECT id, source, COALESCE(record_id, ''), problems, received_at FROM quarantine "
                           "ORDER BY id DESC LIMIT ?1");
    rows.bind(1, static_cast<std::int64_t>(limit));
    std::vector<quarantine_entry> found;
    while (rows.step()) {
      found.push_back({rows.column_int(0), rows.column_text(1), rows.column_text(2), rows.column_text(3),
                       rows.column_int(4)});
    }
    return found;
  });
}

std::optional<std::string> sqlite_outbox::write_problem() {
  const std::string where = "the store " + path_;
  if (auto failure = last_write_failure(path_)) return "the " + *failure;
  struct statvfs disk {};
  const std::filesystem::path folder = std::filesystem::path(path_).parent_path();
  if (::statvfs(folder.empty() ? "." : folder.c_str(), &disk) == 0) {
    const std::uint64_t free_bytes = static_cast<std::uint64_t>(disk.f_bavail) * disk.f_frsize;
    if (free_bytes < min_free_bytes) {
      return where + " is full: " + std::to_string(free_bytes / 1024) + " KiB left on its disk";
    }
  }
  try {
    sqlite::transaction probe(db_);  // not committed: rolled back when it ends
    return std::nullopt;
  } catch (const std::exception&) {
    return where + " cannot be written (permissions, or another process holds it)";
  }
}

std::vector<open_alert> sqlite_outbox::open_alerts() {
  return read([&] {
    sqlite::statement rows(db_.handle(), "SELECT key, detail, opened_at FROM alerts ORDER BY opened_at, key");
    std::vector<open_alert> found;
    while (rows.step()) found.push_back({rows.column_text(0), rows.column_text(1), rows.column_int(2)});
    return found;
  });
}

void sqlite_outbox::set_alert(const open_alert& alert, bool open) {
  write("alert", [&] {
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
  });
}

}  // namespace connector
