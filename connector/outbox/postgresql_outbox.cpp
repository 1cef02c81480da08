// PostgreSQL schema, migrations and statements of the outbox (see postgresql_outbox.h).
#include "connector/outbox/postgresql_outbox.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <thread>

#include <rapidjson/document.h>

#include "connector/digest.h"
#include "fhir/json_writer.h"
#include "fhir/utf8.h"

namespace connector {
namespace {

using postgresql::null;
using postgresql::number;
using postgresql::pg_error;
using postgresql::text;

// Version 1: the SQLite store's version 7, with what sharing adds (owners' hosts, the EHR as each
// instance last saw it). Created under an advisory lock, so instances starting together on a new
// database do not race each other's CREATEs.
constexpr const char* schema_1 = R"sql(
CREATE TABLE IF NOT EXISTS meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS records (
  seq BIGSERIAL PRIMARY KEY,
  record_id TEXT NOT NULL,
  revision INTEGER NOT NULL,
  record_type TEXT NOT NULL,
  patient_key TEXT NOT NULL,
  body TEXT NOT NULL,
  state TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at BIGINT,
  last_error TEXT,
  ehr_response TEXT,
  received_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  claim_owner BIGINT,
  claim_token BIGINT NOT NULL DEFAULT 0,
  lease_until BIGINT,
  maybe_at_ehr BOOLEAN NOT NULL DEFAULT false,
  UNIQUE (record_id, revision)
);
CREATE INDEX IF NOT EXISTS records_by_patient ON records (patient_key, state, seq);
CREATE INDEX IF NOT EXISTS records_dead ON records (seq) WHERE state = 'dead';
CREATE INDEX IF NOT EXISTS records_in_flight ON records (seq) WHERE state = 'in_flight';
CREATE INDEX IF NOT EXISTS records_maybe_at_ehr ON records (seq) WHERE maybe_at_ehr;
-- One row per patient: its lock serializes every change to the lane, across instances.
CREATE TABLE IF NOT EXISTS lanes (
  patient_key TEXT PRIMARY KEY,
  head_seq BIGINT,
  ready_at BIGINT
);
CREATE INDEX IF NOT EXISTS lanes_ready ON lanes (ready_at) WHERE ready_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS quarantine (
  id BIGSERIAL PRIMARY KEY,
  source TEXT NOT NULL,
  record_id TEXT,
  body TEXT NOT NULL,
  problems TEXT NOT NULL,
  received_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS replays (
  id BIGSERIAL PRIMARY KEY,
  record_id TEXT NOT NULL,
  revision INTEGER NOT NULL,
  previous_error TEXT,
  reason TEXT NOT NULL,
  requested_by TEXT NOT NULL,
  at BIGINT NOT NULL
);
-- How each instance last saw the EHR (host:pid).
CREATE TABLE IF NOT EXISTS ehr_contact (
  instance TEXT PRIMARY KEY,
  reached BOOLEAN NOT NULL,
  detail TEXT NOT NULL,
  at BIGINT NOT NULL,
  unreachable_since BIGINT
);
CREATE TABLE IF NOT EXISTS intakes (
  intake_id TEXT PRIMARY KEY,
  at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS alerts (
  key TEXT PRIMARY KEY,
  detail TEXT NOT NULL,
  opened_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS owners (
  id BIGSERIAL PRIMARY KEY,
  kind TEXT NOT NULL,
  host TEXT NOT NULL,
  pid BIGINT NOT NULL,
  started_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger (
  resource_type TEXT NOT NULL,
  key_system TEXT NOT NULL,
  key_value TEXT NOT NULL,
  record_id TEXT NOT NULL,
  ehr_id TEXT NOT NULL,
  version TEXT NOT NULL,
  updated_at BIGINT NOT NULL,
  PRIMARY KEY (resource_type, key_system, key_value)
);
CREATE INDEX IF NOT EXISTS ledger_by_record ON ledger (record_id);
)sql";

// Version 2: what one instance does for all (a lease per role: the alerts' leader), what each
// instance alone sees (its alert conditions, for that leader), and rejected bodies as bytes (a
// file that is not UTF-8, or holds a NUL, is quarantined like any other).
constexpr const char* schema_2 = R"sql(
ALTER TABLE owners ADD COLUMN IF NOT EXISTS conditions TEXT NOT NULL DEFAULT '[]';
CREATE TABLE IF NOT EXISTS leases (
  role TEXT PRIMARY KEY,
  owner BIGINT NOT NULL,
  until BIGINT NOT NULL  -- the server's clock, so the instances' clocks need not agree
);
ALTER TABLE quarantine ALTER COLUMN body TYPE BYTEA USING convert_to(body, 'UTF8');
-- When each instance last reached the EHR: an outage starts no earlier than anyone's last success.
ALTER TABLE ehr_contact ADD COLUMN IF NOT EXISTS reached_at BIGINT;
UPDATE ehr_contact SET reached_at = at WHERE reached;
)sql";

// The server's clock in ms since the epoch.
constexpr const char* server_ms = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";

// True while the owner whose id is in `id_column` holds its advisory lock on a session
// (`class_param`: this schema's lock class); the server drops the lock when the session ends,
// however the process ended.
std::string owner_alive(std::string_view id_column, std::string_view class_param) {
  return "EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted AND l.classid::bigint = " +
         std::string(class_param) + " AND l.objid::bigint = " + std::string(id_column) +
         " AND l.objsubid = 2 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()))";
}

std::string host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0) return "localhost";
  return name;
}

// A rejected record's body as bytes: it may be anything, invalid UTF-8 and NULs included.
constexpr const char* insert_quarantined =
    "INSERT INTO quarantine (source, record_id, body, problems, received_at) VALUES ($1, $2, decode($3, 'hex'), $4, $5)";

// What a TEXT column takes: valid UTF-8 without NUL. A rejected record's id, as far as it could be
// read, may be neither; what does not fit becomes U+FFFD.
std::string valid_text(std::string_view s) {
  std::string out;
  for (const char c : fhir::as_utf8(s)) {
    if (c == '\0') out += "\xEF\xBF\xBD";
    else out += c;
  }
  return out;
}

// An owner's alert conditions as stored: [{"key","detail"}].
std::string conditions_json(const std::vector<open_alert>& conditions) {
  fhir::json_writer out;
  out.begin_array();
  for (const auto& c : conditions) {
    out.begin_object();
    out.member("key", c.key);
    out.member("detail", c.detail);  // no time: the row changes only when what it says changes
    out.end_object();
  }
  out.end_array();
  return std::string(out.view());
}

std::vector<open_alert> conditions_of(const std::string& json) {
  rapidjson::Document d;
  std::vector<open_alert> out;
  if (d.Parse(json.c_str()).HasParseError() || !d.IsArray()) return out;
  for (const auto& c : d.GetArray()) {
    if (!c.IsObject() || !c.HasMember("key") || !c["key"].IsString() || !c.HasMember("detail") || !c["detail"].IsString()) {
      continue;
    }
    out.push_back({c["key"].GetString(), c["detail"].GetString(), 0});
  }
  return out;
}

// A text[] parameter: each element quoted, its quotes and backslashes escaped.
std::string array_literal(const std::vector<std::string>& items) {
  std::string out = "{";
  for (const auto& item : items) {
    if (out.size() > 1) out += ',';
    out += '"';
    for (const char c : item) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  return out + "}";
}

// An inbox file's lock key: the SHA-256 of its name, so the name, which may be made of patient
// data, never reaches the server (nor its log).
std::string file_key(std::string_view name) { return "inbox file " + sha256_hex(name); }

bool as_bool(const std::string& v) { return v == "t" || v == "true" || v == "1"; }

constexpr const char* summary_columns =
    "SELECT record_id, revision, record_type, state, attempts, COALESCE(last_error, ''), "
    "COALESCE(ehr_response, ''), patient_key, received_at, updated_at, maybe_at_ehr FROM records ";

record_summary summary_of(const postgresql::rows& r, int i) {
  record_summary s;
  s.record_id = r.text(i, 0);
  s.revision = static_cast<int>(r.number(i, 1));
  s.record_type = r.text(i, 2);
  s.state = record_state_named(r.text(i, 3)).value_or(record_state::pending);
  s.attempts = static_cast<int>(r.number(i, 4));
  s.last_error = r.text(i, 5);
  s.ehr_response = r.text(i, 6);
  s.patient_key = r.text(i, 7);
  s.received_at_ms = r.number(i, 8);
  s.updated_at_ms = r.number(i, 9);
  s.maybe_at_ehr = as_bool(r.text(i, 10));
  return s;
}

}  // namespace

store_error postgresql_outbox::translate(const pg_error& e, bool outcome_unknown) const {
  const std::string where = "store (PostgreSQL " + db_.where() + ")";
  if (e.connection_lost) return store_error(store_error::kind::busy, where + " cannot be reached: " + e.what(), outcome_unknown);
  if (e.sqlstate == "53100") return store_error(store_error::kind::full, where + " is full: its disk has no space left", outcome_unknown);
  if (e.sqlstate.rfind("53", 0) == 0 || e.conflict()) {
    return store_error(store_error::kind::busy, where + " is busy: " + e.what(), outcome_unknown);
  }
  if (e.sqlstate == "25006" || e.sqlstate == "42501" || e.sqlstate.rfind("28", 0) == 0) {
    return store_error(store_error::kind::unwritable, where + " cannot be written: " + e.what(), outcome_unknown);
  }
  return store_error(store_error::kind::other, where + ": " + e.what() + (e.sqlstate.empty() ? "" : " (SQLSTATE " + e.sqlstate + ")"),
                     outcome_unknown);
}

// After a lost connection: a new session, this process's owners' locks taken again on it.
void postgresql_outbox::connect_again() {
  db_.reconnect();
  db_.run("SET lock_timeout = " + std::to_string(options_.busy_timeout_ms));
  // While the session was gone another instance may have taken this owner for dead and forgotten
  // it: its claims then are gone (their tokens moved on), but the owner goes on under its id, so
  // its row comes back and its lock is taken again; an owner whose lock another session still
  // holds (the old one, not yet ended by the server) stays counted alive through that session.
  for (const auto& [id, kind] : own_owners_) {
    db_.exec("owner again",
             "INSERT INTO owners (id, kind, host, pid, started_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
             {number(id), text(kind), text(host_name()), number(::getpid()), number(registered_at_ms_)});
    db_.exec("relock", "SELECT pg_try_advisory_lock($1::int, $2::int)", {number(lock_class_), number(id)});
  }
  // Inbox files being read here: held again (another instance that took one meanwhile holds it,
  // and both store it: its records come back as duplicates).
  for (const auto& key : held_files_) {
    db_.exec("hold file", "SELECT pg_try_advisory_lock(hashtextextended($1, $2))", {text(key), number(lock_class_)});
  }
}

template <typename Work>
auto postgresql_outbox::write(std::string_view operation, Work work) -> decltype(work()) {
  for (int attempt = 1;; ++attempt) {
    bool committing = false;
    try {
      if (!db_.ok()) connect_again();
      db_.run("BEGIN");
      if constexpr (std::is_void_v<decltype(work())>) {
        work();
        committing = true;
        db_.run("COMMIT");
        return;
      } else {
        auto result = work();
        committing = true;
        db_.run("COMMIT");
        return result;
      }
    } catch (const pg_error& e) {
      if (db_.ok()) {
        try {
          db_.run("ROLLBACK");
        } catch (const pg_error&) {
        }
      }
      // The connection went while COMMIT was on its way: it may have committed all the same.
      if (committing && e.connection_lost) throw translate(e, true);
      if (!e.conflict() && !e.connection_lost) throw translate(e);
      if (options_.on_busy) options_.on_busy(operation, attempt);
      if (attempt >= options_.busy_attempts) throw translate(e);
      if (e.connection_lost) std::this_thread::sleep_for(std::chrono::milliseconds(100 * attempt));
    } catch (...) {
      if (db_.ok()) {
        try {
          db_.run("ROLLBACK");
        } catch (const pg_error&) {
        }
      }
      throw;
    }
  }
}

template <typename Work>
auto postgresql_outbox::read(Work work) -> decltype(work()) {
  try {
    if (!db_.ok()) connect_again();
    return work();
  } catch (const pg_error& e) {
    if (!e.connection_lost) throw translate(e);
    try {  // once more on a new connection: a server restart is over quickly
      connect_again();
      return work();
    } catch (const pg_error& again) {
      throw translate(again);
    }
  }
}

// A function-try-block: a database that cannot be reached or migrated is a store_error.
postgresql_outbox::postgresql_outbox(postgresql_options options) try
    : options_(std::move(options)), db_(options_.conninfo, options_.password), instance_(options_.instance.empty() ? host_name() + ":" + std::to_string(::getpid()) : options_.instance) {
  db_.run("SET lock_timeout = " + std::to_string(options_.busy_timeout_ms));
  lock_class_ = db_.exec("class", "SELECT hashtext(current_schema()) & 2147483647").number(0, 0);
  migrate();
} catch (const pg_error& e) {
  throw store_error(e.connection_lost ? store_error::kind::unwritable : store_error::kind::other,
                    "store (PostgreSQL): " + std::string(e.what()));
}

void postgresql_outbox::migrate() {
  // The schema as it stands, without DDL: an instance starting beside running ones must not take
  // the table locks CREATE INDEX IF NOT EXISTS takes (they would wait for, and deadlock with,
  // the others' writes).
  auto recorded = [&] {
    if (db_.exec("meta exists", "SELECT to_regclass('meta') IS NOT NULL").text(0, 0) != "t") return 0;
    const auto v = db_.exec("version", "SELECT value FROM meta WHERE key = 'schema_version'");
    return v.empty() ? 0 : std::stoi(v.text(0, 0));
  };
  if (recorded() == postgresql_schema_version) return;
  db_.run("BEGIN");
  try {
    // Key 0 of this schema's class: one instance creates or migrates at a time.
    db_.exec("migrate lock", "SELECT pg_advisory_xact_lock($1::int, 0)", {number(lock_class_)});
    const int before = recorded();  // again, under the lock: another instance may have done it
    if (before == postgresql_schema_version) {
      db_.run("COMMIT");
      return;
    }
    const int version = before;
    if (version > postgresql_schema_version) {
      throw store_error(store_error::kind::other,
                        "the store (PostgreSQL " + db_.where() + ") has schema version " + std::to_string(version) +
                            ", newer than this connector's (" + std::to_string(postgresql_schema_version) +
                            "): run the newer connector on every instance");
    }
    if (before >= 1) {
      // The instances of the older release use the tables this changes: they must stop first.
      const auto running = db_.exec("running", "SELECT COUNT(*) FROM owners o WHERE " + owner_alive("o.id", "$1"),
                                    {number(lock_class_)});
      if (running.number(0, 0) > 0) {
        throw store_error(store_error::kind::other,
                          "the store (PostgreSQL " + db_.where() + ") has schema version " + std::to_string(before) +
                              " and " + running.text(0, 0) + " instance(s) of the older release running on it: "
                              "stop every instance, then start this release (it migrates the schema to version " +
                              std::to_string(postgresql_schema_version) + ")");
      }
    }
    if (before < 1) db_.run(schema_1);
    if (before < 2) db_.run(schema_2);
    db_.exec("set version",
             "INSERT INTO meta (key, value) VALUES ('schema_version', $1) ON CONFLICT (key) DO UPDATE SET value = $1",
             {number(postgresql_schema_version)});
    db_.run("COMMIT");
  } catch (...) {
    try {
      db_.run("ROLLBACK");
    } catch (const pg_error&) {
    }
    throw;
  }
}

int postgresql_outbox::schema_version() {
  return read([&] {
    const auto v = db_.exec("version", "SELECT value FROM meta WHERE key = 'schema_version'");
    return v.empty() ? 0 : std::stoi(v.text(0, 0));
  });
}

void postgresql_outbox::lock_lanes(std::vector<std::string> patient_keys) {
  std::sort(patient_keys.begin(), patient_keys.end());
  patient_keys.erase(std::unique(patient_keys.begin(), patient_keys.end()), patient_keys.end());
  if (patient_keys.empty()) return;
  // Creates the lanes that are new; either way their rows are locked until this transaction ends,
  // in the order given (one statement, however many lanes).
  db_.exec("lock lanes",
           "INSERT INTO lanes (patient_key) SELECT p FROM unnest($1::text[]) WITH ORDINALITY AS t(p, n) ORDER BY n "
           "ON CONFLICT (patient_key) DO UPDATE SET patient_key = EXCLUDED.patient_key",
           {text(array_literal(patient_keys))});
}

void postgresql_outbox::refresh_lane(const std::string& patient_key, std::int64_t now_ms) {
  // The head: the record in flight, else the oldest open one; ready now when pending (a pending
  // head that is already waiting keeps its place in line: fairness between lanes), at its retry
  // time when retry_scheduled, never while in flight; no head, no readiness. One statement.
  db_.exec("set lane",
           "WITH f AS (SELECT seq, state, next_attempt_at FROM records WHERE patient_key = $1 AND state = 'in_flight' "
           "LIMIT 1), o AS (SELECT seq, state, next_attempt_at FROM records WHERE patient_key = $1 AND "
           "state IN ('pending', 'in_flight', 'retry_scheduled') ORDER BY seq LIMIT 1), "
           "h AS (SELECT * FROM f UNION ALL SELECT * FROM o WHERE NOT EXISTS (SELECT 1 FROM f)) "
           "UPDATE lanes l SET head_seq = (SELECT seq FROM h), ready_at = CASE (SELECT state FROM h) "
           "WHEN 'pending' THEN CASE WHEN l.head_seq IS NOT DISTINCT FROM (SELECT seq FROM h) AND l.ready_at IS NOT NULL "
           "THEN l.ready_at ELSE $2::bigint END WHEN 'retry_scheduled' THEN (SELECT next_attempt_at FROM h) END "
           "WHERE l.patient_key = $1",
           {text(patient_key), number(now_ms)});
}

void postgresql_outbox::record_contact(const ehr_contact& contact, std::int64_t now_ms) {
  db_.exec("contact",
           "INSERT INTO ehr_contact (instance, reached, detail, at, unreachable_since, reached_at) "
           "VALUES ($1, $2, $3, $4, CASE WHEN $2 THEN NULL ELSE $4::bigint END, CASE WHEN $2 THEN $4::bigint END) "
           "ON CONFLICT (instance) DO UPDATE SET reached = $2, detail = $3, at = $4, unreachable_since = "
           "CASE WHEN $2 THEN NULL ELSE COALESCE(ehr_contact.unreachable_since, $4::bigint) END, reached_at = "
           "CASE WHEN $2 THEN $4::bigint ELSE ehr_contact.reached_at END",
           {text(instance_), text(contact.reached ? "true" : "false"), text(contact.detail), number(now_ms)});
}

void postgresql_outbox::note_ehr_contact(const ehr_contact& contact, std::int64_t now_ms) {
  write("note the EHR contact", [&] { record_contact(contact, now_ms); });
}

std::vector<enqueue_result> postgresql_outbox::enqueue(const std::vector<inbound_record>& records,
                                                       const std::vector<quarantined_record>& quarantined,
                                                       std::int64_t now_ms, std::string_view intake_id) {
  return write("store records", [&] {
    // Revisions of one record are decided under a lock on its id (sorted, so batches never
    // deadlock): two instances storing revisions of one record for two patients at once would
    // otherwise both find no earlier revision, and the record would sit in two lanes.
    std::vector<std::string> ids;
    for (const auto& r : records) ids.push_back(r.record_id);
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    std::vector<enqueue_result> results;
    // A few statements per batch, and one per new record: a round trip is what a record costs here.
    std::map<std::string, std::pair<std::int64_t, std::string>> latest;  // record id -> revision, patient
    if (!ids.empty()) {
      const std::string id_array = array_literal(ids);
      db_.exec("record locks",
               "SELECT pg_advisory_xact_lock(hashtextextended(id, $2)) FROM unnest($1::text[]) WITH ORDINALITY AS t(id, n) "
               "ORDER BY n",
               {text(id_array), number(lock_class_)});
      std::vector<std::string> patients;
      for (const auto& r : records) patients.push_back(r.patient_key);
      lock_lanes(patients);
      const auto stored = db_.exec("latest revisions",
                                   "SELECT DISTINCT ON (record_id) record_id, revision, patient_key FROM records "
                                   "WHERE record_id = ANY($1::text[]) ORDER BY record_id, revision DESC",
                                   {text(id_array)});
      for (int i = 0; i < stored.size(); ++i) latest[stored.text(i, 0)] = {stored.number(i, 1), stored.text(i, 2)};
    }
    results.reserve(records.size());
    for (const auto& r : records) {
      const auto found = latest.find(r.record_id);
      if (found != latest.end() && found->second.second != r.patient_key) {
        const fhir::issues problem = {{fhir::severity::error, "business-rule", "patient.mrn",
                                       "names another patient than revision " + std::to_string(found->second.first) +
                                           " of this record: a record cannot move between patients; retract it "
                                           "(status entered-in-error) and send the corrected one under a new record_id"}};
        db_.exec("quarantine", insert_quarantined,
                 {text("revision of another patient"), text(r.record_id), text(hex(r.body)),
                  text(problems_as_outcome(problem)), number(now_ms)});
        results.push_back(enqueue_result::other_patient);
        continue;
      }
      if (found != latest.end() && found->second.first == r.revision) {
        results.push_back(enqueue_result::duplicate);
        continue;
      }
      if (found != latest.end() && found->second.first > r.revision) {
        results.push_back(enqueue_result::stale);
        continue;
      }
      const bool superseding =
          found != latest.end() && db_.exec("supersede",
                                            "UPDATE records SET state = 'superseded', updated_at = $2 "
                                            "WHERE record_id = $1 AND state IN ('pending', 'retry_scheduled')",
                                            {text(r.record_id), number(now_ms)})
                                           .affected() > 0;
      const std::vector<postgresql::param> row = {text(r.record_id), number(r.revision), text(r.record_type),
                                                  text(r.patient_key), text(r.body), number(now_ms)};
      if (superseding) {
        db_.exec("insert record",
                 "INSERT INTO records (record_id, revision, record_type, patient_key, body, state, received_at, "
                 "updated_at) VALUES ($1, $2, $3, $4, $5, 'pending', $6, $6)",
                 row);
        refresh_lane(r.patient_key, now_ms);  // the superseded revision may have headed the lane
      } else {
        // Stored, and joining its lane, which it heads only when the lane has no open record.
        db_.exec("insert and join",
                 "WITH r AS (INSERT INTO records (record_id, revision, record_type, patient_key, body, state, "
                 "received_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'pending', $6, $6) RETURNING seq) "
                 "UPDATE lanes SET ready_at = CASE WHEN head_seq IS NULL THEN $6 ELSE ready_at END, "
                 "head_seq = COALESCE(head_seq, (SELECT seq FROM r)) WHERE patient_key = $4",
                 row);
      }
      latest[r.record_id] = {r.revision, r.patient_key};  // a later revision in this batch sees this one
      results.push_back(superseding ? enqueue_result::accepted_superseding : enqueue_result::accepted);
    }
    for (const auto& q : quarantined) {
      db_.exec("quarantine", insert_quarantined,
               {text(valid_text(q.source)), q.record_id.empty() ? null : text(valid_text(q.record_id)), text(hex(q.body)),
                text(valid_text(problems_as_outcome(q.problems))), number(now_ms)});
    }
    if (!intake_id.empty()) {
      db_.exec("intake", "INSERT INTO intakes (intake_id, at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
               {text(intake_id), number(now_ms)});
    }
    return results;
  });
}

bool postgresql_outbox::intake_seen(std::string_view intake_id) {
  return read([&] { return !db_.exec("intake seen", "SELECT 1 FROM intakes WHERE intake_id = $1", {text(intake_id)}).empty(); });
}

std::optional<std::string> postgresql_outbox::patient_key_fingerprint() {
  return read([&]() -> std::optional<std::string> {
    const auto v = db_.exec("fingerprint", "SELECT value FROM meta WHERE key = 'patient_key_fingerprint'");
    if (v.empty()) return std::nullopt;
    return v.text(0, 0);
  });
}

void postgresql_outbox::record_patient_key_fingerprint(const std::string& fingerprint) {
  const std::string recorded = write("record the patient key", [&] {
    db_.exec("set fingerprint",
             "INSERT INTO meta (key, value) VALUES ('patient_key_fingerprint', $1) ON CONFLICT DO NOTHING",
             {text(fingerprint)});
    return db_.exec("fingerprint", "SELECT value FROM meta WHERE key = 'patient_key_fingerprint'").text(0, 0);
  });
  // Two instances starting on a new database with two keys: the second learns it lost here.
  if (recorded != fingerprint) {
    throw store_error(store_error::kind::other, "store (PostgreSQL " + db_.where() +
                                                    ") was created with another patient key (fingerprint " + recorded +
                                                    "): give every instance that key");
  }
}

bool postgresql_outbox::holds_records() {
  return read([&] {
    return as_bool(db_.exec("holds records",
                            "SELECT EXISTS (SELECT 1 FROM records) OR EXISTS (SELECT 1 FROM quarantine) "
                            "OR EXISTS (SELECT 1 FROM lanes)")
                       .text(0, 0));
  });
}

std::int64_t postgresql_outbox::register_owner(std::string_view kind, std::int64_t now_ms) {
  // Any number of daemons share a PostgreSQL store: that is what it is for.
  const std::int64_t id = write("register", [&] {
    const std::int64_t owner = db_.exec("register",
                                        "INSERT INTO owners (kind, host, pid, started_at) VALUES ($1, $2, $3, $4) RETURNING id",
                                        {text(kind), text(host_name()), number(::getpid()), number(now_ms)})
                                   .number(0, 0);
    // A session lock, taken before the row is committed, so nobody sees this owner without it.
    // Should the transaction not commit, the lock names an id nobody will have.
    const auto locked = db_.exec("owner lock", "SELECT pg_try_advisory_lock($1::int, $2::int)",
                                 {number(lock_class_), number(owner)});
    if (!as_bool(locked.text(0, 0))) {
      throw store_error(store_error::kind::other, "store (PostgreSQL " + db_.where() + "): cannot lock owner " +
                                                      std::to_string(owner));
    }
    return owner;
  });
  own_owners_[id] = std::string(kind);
  if (registered_at_ms_ == 0) registered_at_ms_ = now_ms;
  return id;
}

void postgresql_outbox::release_owner(std::int64_t owner, std::int64_t now_ms) {
  write("release", [&] {
    const auto held = db_.exec("held by owner",
                               "SELECT DISTINCT patient_key FROM records WHERE state = 'in_flight' AND claim_owner = $1",
                               {number(owner)});
    std::vector<std::string> patients;
    for (int i = 0; i < held.size(); ++i) patients.push_back(held.text(i, 0));
    lock_lanes(patients);
    db_.exec("release claims",
             "UPDATE records SET state = 'pending', claim_owner = NULL, lease_until = NULL, "
             "claim_token = claim_token + 1, maybe_at_ehr = true, updated_at = $2 "
             "WHERE state = 'in_flight' AND claim_owner = $1",
             {number(owner), number(now_ms)});
    for (const auto& p : patients) refresh_lane(p, now_ms);
    db_.exec("forget owner", "DELETE FROM owners WHERE id = $1", {number(owner)});
    db_.exec("hand over", "DELETE FROM leases WHERE owner = $1", {number(owner)});  // the next to ask leads at once
  });
  try {
    db_.exec("owner unlock", "SELECT pg_advisory_unlock($1::int, $2::int)", {number(lock_class_), number(owner)});
  } catch (const pg_error&) {  // a lost session has let go of it already
  }
  own_owners_.erase(owner);
}

std::vector<claimed_record> postgresql_outbox::claim(std::int64_t owner, std::int64_t now_ms, std::int64_t lease_ms,
                                                     int limit) {
  return write("claim", [&] {
    // Lanes another instance is claiming or changing right now are skipped, never waited for.
    // Their heads are marked in flight and the lanes taken out of line, in one statement; a lane
    // whose head is no longer open (null columns) is put right after.
    // The limit is written into the statement (one prepared statement per limit): as a parameter,
    // a generic plan would guess a tenth of the lanes and join them to every record by a full scan.
    // Lanes are taken in ready_at order alone (the index's): a backlog stored in one transaction
    // has one ready_at, and a tie-breaker would sort all of it; the few taken are then in seq order.
    const std::string n = std::to_string(std::max(limit, 0));
    const auto r = db_.exec("claim " + n,
                            "WITH ready AS (SELECT patient_key, head_seq, ready_at FROM lanes WHERE ready_at IS NOT NULL AND "
                            "ready_at <= $1 ORDER BY ready_at LIMIT " + n + " FOR UPDATE SKIP LOCKED), "
                            "marked AS (UPDATE records r SET state = 'in_flight', attempts = attempts + 1, updated_at = $1, "
                            "claim_owner = $2, claim_token = claim_token + 1, lease_until = $3 FROM ready "
                            "WHERE r.seq = ready.head_seq AND r.state IN ('pending', 'retry_scheduled') "
                            "RETURNING r.seq, r.record_id, r.revision, r.body, r.attempts, r.claim_token, r.received_at), "
                            "out_of_line AS (UPDATE lanes l SET ready_at = NULL FROM ready, marked "
                            "WHERE l.patient_key = ready.patient_key AND marked.seq = ready.head_seq) "
                            "SELECT ready.patient_key, ready.head_seq, m.record_id, m.revision, m.body, m.attempts, "
                            "m.claim_token, m.received_at FROM ready LEFT JOIN marked m ON m.seq = ready.head_seq "
                            "ORDER BY ready.ready_at, ready.head_seq",
                            {number(now_ms), number(owner), number(now_ms + lease_ms)});
    std::vector<claimed_record> taken;
    for (int i = 0; i < r.size(); ++i) {
      const std::string patient = r.text(i, 0);
      if (r.is_null(i, 2)) {  // the lane pointed at a record no longer open: put the lane right
        refresh_lane(patient, now_ms);
        continue;
      }
      claimed_record c;
      c.seq = r.number(i, 1);
      c.patient_key = patient;
      c.record_id = r.text(i, 2);
      c.revision = static_cast<int>(r.number(i, 3));
      c.body = r.text(i, 4);
      c.attempts = static_cast<int>(r.number(i, 5));
      c.token = r.number(i, 6);
      c.received_at_ms = r.number(i, 7);
      c.owner = owner;
      c.lease_until_ms = now_ms + lease_ms;
      taken.push_back(std::move(c));
    }
    return taken;
  });
}

std::vector<std::int64_t> postgresql_outbox::renew(const std::vector<claimed_record>& claims, std::int64_t now_ms,
                                                   std::int64_t lease_ms) {
  if (claims.empty()) return {};
  std::vector<claimed_record> in_order = claims;  // rows locked in one order by every instance
  std::sort(in_order.begin(), in_order.end(), [](const auto& a, const auto& b) { return a.seq < b.seq; });
  return write("renew", [&] {
    std::vector<std::int64_t> lost;
    for (const auto& c : in_order) {
      const auto renewed = db_.exec("renew",
                                    "UPDATE records SET lease_until = $3 WHERE seq = $1 AND claim_token = $2 AND state = 'in_flight'",
                                    {number(c.seq), number(c.token), number(now_ms + lease_ms)});
      if (renewed.affected() == 0) lost.push_back(c.seq);
    }
    return lost;
  });
}

bool postgresql_outbox::settle(const claimed_record& record, const attempt_report& report, std::int64_t now_ms) {
  using result = attempt_report::result;
  return write("settle", [&] {
    lock_lanes({record.patient_key});
    const bool waits = report.what == result::retry || report.what == result::released;
    // Released and held records were not sent: their claim does not count as an attempt.
    const bool not_sent = report.what == result::released || report.what == result::held;
    const auto settled =
        db_.exec("settle",
                 "UPDATE records SET state = $2, next_attempt_at = $3, last_error = $4, "
                 "ehr_response = COALESCE($5, ehr_response), attempts = attempts - $6, updated_at = $7, "
                 "claim_owner = NULL, lease_until = NULL, maybe_at_ehr = "
                 "CASE WHEN $2 = 'delivered' THEN false WHEN $8 THEN true ELSE maybe_at_ehr END "
                 "WHERE seq = $1 AND state = 'in_flight' AND claim_token = $9",
                 {number(record.seq), text(state_after(report.what)), waits ? number(report.retry_at_ms) : null,
                  report.error.empty() ? null : text(report.error),
                  report.ehr_response.empty() ? null : text(report.ehr_response), number(not_sent ? 1 : 0),
                  number(now_ms), text(report.maybe_at_ehr ? "true" : "false"), number(record.token)});
    if (settled.affected() == 0) {
      // Already recorded (this same settle, repeated after an unknown outcome), or taken over:
      // then the new holder's word counts, not ours.
      const auto now = db_.exec("settled?", "SELECT state, claim_token FROM records WHERE seq = $1", {number(record.seq)});
      return !now.empty() && now.text(0, 0) != "in_flight" && now.number(0, 1) == record.token;
    }
    if (report.what == result::delivered) {
      // A delivered procedure may be what a held follow-up of this patient waits for.
      db_.exec("release held",
               "UPDATE records SET state = 'pending', updated_at = $2 WHERE patient_key = $1 AND state = 'held'",
               {text(record.patient_key), number(now_ms)});
    }
    refresh_lane(record.patient_key, now_ms);
    if (report.contact) record_contact(*report.contact, now_ms);
    return true;
  });
}

std::vector<recovered_claim> postgresql_outbox::take_over(std::int64_t now_ms, std::int64_t horizon_ms,
                                                         const std::vector<claimed_record>& holding) {
  return write("take over", [&] {
    struct stuck {
      std::int64_t seq, token;
      recovered_claim claim;
    };
    std::vector<stuck> candidates;
    // Claims and their holders in one statement, so one snapshot: an owner that registered and
    // claimed after a separate read of the owners would look unregistered, and lose its claim.
    // Alive: its session holds its advisory lock (the server drops it when the session ends).
    const auto q = db_.exec("in flight",
                            "SELECT r.seq, r.record_id, r.revision, r.patient_key, r.claim_owner, r.lease_until, "
                            "r.claim_token, o.kind || ' pid ' || o.pid || ' on ' || o.host, "
                            "o.id IS NOT NULL AND " + owner_alive("o.id", "$1") + " "
                            "FROM records r LEFT JOIN owners o ON o.id = r.claim_owner "
                            "WHERE r.state = 'in_flight' ORDER BY r.seq",
                            {number(lock_class_)});
    for (int i = 0; i < q.size(); ++i) {
      const bool registered = !q.is_null(i, 7);
      const bool ours = !q.is_null(i, 4) && own_owners_.count(q.number(i, 4)) > 0;
      const bool gone = !ours && !as_bool(q.text(i, 8));
      const std::int64_t until = q.is_null(i, 5) ? 0 : q.number(i, 5);
      // A lease further ahead than any lease is long: the wall clock stepped back.
      const bool expired = until <= now_ms || until > now_ms + horizon_ms;
      if (!gone && !expired) continue;
      const std::int64_t seq = q.number(i, 0), token = q.number(i, 6);
      if (ours) {
        // Ours: only a claim this process does not know it holds comes back, once its lease ran out.
        const bool held = std::any_of(holding.begin(), holding.end(),
                                      [&](const claimed_record& c) { return c.seq == seq && c.token == token; });
        if (held) continue;
      }
      std::string who = registered ? q.text(i, 7) : std::string("an owner no longer registered");
      who += gone ? " (gone)" : " (its lease ran out)";
      candidates.push_back({seq, token, {q.text(i, 1), static_cast<int>(q.number(i, 2)), q.text(i, 3), std::move(who)}});
    }
    std::vector<std::string> patients;
    for (const auto& c : candidates) patients.push_back(c.claim.patient_key);
    lock_lanes(patients);
    std::vector<recovered_claim> recovered;
    for (auto& c : candidates) {
      // A new token: the old holder's settle, should it come, no longer counts. Only if nobody
      // settled or took it meanwhile (another instance sweeping at the same moment).
      const auto back = db_.exec("take back",
                                 "UPDATE records SET state = 'pending', claim_owner = NULL, lease_until = NULL, "
                                 "claim_token = claim_token + 1, maybe_at_ehr = true, updated_at = $3, last_error = $4 "
                                 "WHERE seq = $1 AND claim_token = $2 AND state = 'in_flight'",
                                 {number(c.seq), number(c.token), number(now_ms),
                                  text("taken back from " + c.claim.holder + "; possibly at the EHR")});
      if (back.affected() == 0) continue;
      refresh_lane(c.claim.patient_key, now_ms);
      recovered.push_back(std::move(c.claim));
    }
    // Owners whose session is gone are forgotten, with how they last saw the EHR.
    const auto dead = db_.exec("dead owners",
                               "SELECT o.id, o.host || ':' || o.pid FROM owners o WHERE NOT " + owner_alive("o.id", "$1"),
                               {number(lock_class_)});
    for (int i = 0; i < dead.size(); ++i) {
      if (own_owners_.count(dead.number(i, 0)) > 0) continue;
      db_.exec("forget owner", "DELETE FROM owners WHERE id = $1", {number(dead.number(i, 0))});
      db_.exec("forget contact", "DELETE FROM ehr_contact WHERE instance = $1", {text(dead.text(i, 1))});
    }
    // Lanes due further ahead than any delay is long: the wall clock stepped back; due now.
    db_.exec("clock", "UPDATE lanes SET ready_at = $1 WHERE ready_at > $2", {number(now_ms), number(now_ms + horizon_ms)});
    return recovered;
  });
}

std::vector<dead_letter> postgresql_outbox::replay(const std::string& record_id, const std::string& reason,
                                                   const std::string& who, bool dry_run, std::int64_t now_ms) {
  return write("replay", [&] {
    const auto dead = db_.exec("dead letters",
                               "SELECT seq, record_id, revision, patient_key, COALESCE(last_error, '') FROM records "
                               "WHERE state = 'dead' AND ($1 = '' OR record_id = $1) ORDER BY seq",
                               {text(record_id)});
    std::vector<dead_letter> letters;
    std::vector<std::string> patients;
    for (int i = 0; i < dead.size(); ++i) {
      letters.push_back({dead.text(i, 1), static_cast<int>(dead.number(i, 2)), dead.text(i, 4)});
      patients.push_back(dead.text(i, 3));
    }
    if (dry_run) return letters;
    lock_lanes(patients);
    for (int i = 0; i < dead.size(); ++i) {
      const auto requeued = db_.exec("requeue",
                                     "UPDATE records SET state = 'pending', attempts = 0, last_error = NULL, "
                                     "next_attempt_at = NULL, updated_at = $2 WHERE seq = $1 AND state = 'dead'",
                                     {number(dead.number(i, 0)), number(now_ms)});
      if (requeued.affected() == 0) continue;  // another replay at the same moment took it: audited there
      db_.exec("audit replay",
               "INSERT INTO replays (record_id, revision, previous_error, reason, requested_by, at) "
               "VALUES ($1, $2, $3, $4, $5, $6)",
               {text(letters[i].record_id), number(letters[i].revision), text(letters[i].last_error), text(reason),
                text(who), number(now_ms)});
      refresh_lane(patients[i], now_ms);
    }
    return letters;
  });
}

std::vector<std::string> postgresql_outbox::history(const std::string& patient_key, std::int64_t except_seq) {
  return read([&] {
    const auto r = db_.exec("history",
                            "SELECT body FROM records WHERE patient_key = $1 AND (state = 'delivered' OR maybe_at_ehr) "
                            "AND seq <> $2 ORDER BY seq",
                            {text(patient_key), number(except_seq)});
    std::vector<std::string> bodies;
    for (int i = 0; i < r.size(); ++i) bodies.push_back(r.text(i, 0));
    return bodies;
  });
}

std::vector<ledger_entry> postgresql_outbox::ledger_lookup(const std::vector<ledger_key>& keys) {
  return read([&] {
    std::vector<ledger_entry> found;
    for (const auto& k : keys) {
      const auto r = db_.exec("ledger lookup",
                              "SELECT record_id, ehr_id, version, updated_at FROM ledger "
                              "WHERE resource_type = $1 AND key_system = $2 AND key_value = $3",
                              {text(k.type), text(k.system), text(k.value)});
      if (!r.empty()) found.push_back({k, r.text(0, 0), r.text(0, 1), r.text(0, 2), r.number(0, 3)});
    }
    return found;
  });
}

bool postgresql_outbox::ledger_record(const claimed_record& claim, const ledger_entry& entry, std::int64_t now_ms) {
  return write("ledger", [&] {
    // FOR SHARE: a take-over of this claim waits until this entry is written, or refuses it.
    const auto held = db_.exec("claim held",
                               "SELECT 1 FROM records WHERE seq = $1 AND state = 'in_flight' AND claim_token = $2 FOR SHARE",
                               {number(claim.seq), number(claim.token)});
    if (held.empty()) return false;
    db_.exec("ledger write",
             "INSERT INTO ledger (resource_type, key_system, key_value, record_id, ehr_id, version, updated_at) "
             "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (resource_type, key_system, key_value) DO UPDATE SET "
             "record_id = $4, ehr_id = $5, version = $6, updated_at = $7",
             {text(entry.key.type), text(entry.key.system), text(entry.key.value), text(claim.record_id),
              text(entry.ehr_id), text(entry.version), number(now_ms)});
    return true;
  });
}

std::vector<ledger_entry> postgresql_outbox::ledger_of_record(const std::string& record_id) {
  return read([&] {
    const auto r = db_.exec("ledger of record",
                            "SELECT resource_type, key_system, key_value, ehr_id, version, updated_at FROM ledger "
                            "WHERE record_id = $1 ORDER BY updated_at, resource_type",
                            {text(record_id)});
    std::vector<ledger_entry> found;
    for (int i = 0; i < r.size(); ++i) {
      found.push_back({{r.text(i, 0), r.text(i, 1), r.text(i, 2)}, record_id, r.text(i, 3), r.text(i, 4), r.number(i, 5)});
    }
    return found;
  });
}

void postgresql_outbox::note_write_strategy(const std::string& summary) {
  write("note the write strategy", [&] {
    db_.exec("set strategy",
             "INSERT INTO meta (key, value) VALUES ('write_strategy', $1) ON CONFLICT (key) DO UPDATE SET value = $1",
             {text(summary)});
  });
}

outbox_status postgresql_outbox::status(std::int64_t now_ms) {
  return read([&] {
    outbox_status s;
    const auto w = db_.exec("strategy", "SELECT value FROM meta WHERE key = 'write_strategy'");
    if (!w.empty()) s.write_strategy = w.text(0, 0);
    for (auto state : all_record_states) s.records[state] = 0;
    const auto counts = db_.exec("counts", "SELECT state, COUNT(*) FROM records GROUP BY state");
    for (int i = 0; i < counts.size(); ++i) {
      if (const auto state = record_state_named(counts.text(i, 0))) s.records[*state] = counts.number(i, 1);
    }
    s.quarantined = db_.exec("quarantined count", "SELECT COUNT(*) FROM quarantine").number(0, 0);
    const auto oldest = db_.exec("oldest",
                                 "SELECT MIN(r.received_at) FROM lanes l JOIN records r ON r.seq = l.head_seq "
                                 "WHERE r.state IN ('pending', 'retry_scheduled', 'in_flight')");
    if (!oldest.is_null(0, 0)) s.oldest_pending_age_ms = now_ms - oldest.number(0, 0);
    const auto error = db_.exec("last error",
                                "SELECT last_error FROM records WHERE last_error IS NOT NULL ORDER BY updated_at DESC LIMIT 1");
    if (!error.empty()) s.last_error = error.text(0, 0);
    // The EHR as the instance that saw it last saw it; unreachable since the first failure any
    // instance saw after the last time any instance reached it (an instance failing since before
    // then counts from its latest failure; one whose failure is older is not counted).
    const auto contact = db_.exec("contact seen",
                                  "SELECT reached, detail, at, (SELECT MIN(CASE WHEN c.unreachable_since >= l.at "
                                  "THEN c.unreachable_since ELSE c.at END) FROM ehr_contact c, "
                                  "(SELECT COALESCE(MAX(reached_at), 0) AS at FROM ehr_contact) l "
                                  "WHERE NOT c.reached AND c.at >= l.at) "
                                  "FROM ehr_contact ORDER BY at DESC LIMIT 1");
    if (!contact.empty()) {
      s.ehr_reached = as_bool(contact.text(0, 0));
      s.ehr_detail = contact.text(0, 1);
      s.ehr_last_contact_ms = contact.number(0, 2);
      if (!s.ehr_reached && !contact.is_null(0, 3)) s.ehr_unreachable_since_ms = contact.number(0, 3);
    }
    s.maybe_at_ehr = db_.exec("maybe count", "SELECT COUNT(*) FROM records WHERE maybe_at_ehr").number(0, 0);
    const auto owners = db_.exec("owners",
                                 "SELECT o.id, o.kind, o.pid, o.started_at, (SELECT COUNT(*) FROM records r "
                                 "WHERE r.state = 'in_flight' AND r.claim_owner = o.id), " + owner_alive("o.id", "$1") + ", o.host, "
                                 "(SELECT MAX(r.lease_until) FROM records r WHERE r.state = 'in_flight' AND r.claim_owner = o.id), "
                                 "o.conditions "
                                 "FROM owners o ORDER BY o.id",
                                 {number(lock_class_)});
    for (int i = 0; i < owners.size(); ++i) {
      owner_summary o;
      o.id = owners.number(i, 0);
      o.kind = owners.text(i, 1);
      o.pid = owners.number(i, 2);
      o.started_at_ms = owners.number(i, 3);
      o.claims = static_cast<int>(owners.number(i, 4));
      o.alive = own_owners_.count(o.id) > 0 || as_bool(owners.text(i, 5));
      o.host = owners.text(i, 6);
      if (!owners.is_null(i, 7)) o.lease_until_ms = owners.number(i, 7);
      o.conditions = conditions_of(owners.text(i, 8));
      s.owners.push_back(std::move(o));
    }
    // The roles whose lease is held now, on the server's clock.
    const auto leads = db_.exec("leads", "SELECT owner, role FROM leases WHERE until > " + std::string(server_ms) + " ORDER BY role");
    for (int i = 0; i < leads.size(); ++i) {
      for (auto& o : s.owners) {
        if (o.id == leads.number(i, 0)) o.leads.push_back(leads.text(i, 1));
      }
    }
    return s;
  });
}

std::vector<record_summary> postgresql_outbox::records_in_state(record_state state, int limit) {
  return read([&] {
    const auto r = db_.exec("in state", std::string(summary_columns) + "WHERE state = $1 ORDER BY seq LIMIT $2",
                            {text(to_string(state)), number(limit)});
    std::vector<record_summary> found;
    for (int i = 0; i < r.size(); ++i) found.push_back(summary_of(r, i));
    return found;
  });
}

std::vector<record_summary> postgresql_outbox::record_history(const std::string& record_id) {
  return read([&] {
    const auto r = db_.exec("record history", std::string(summary_columns) + "WHERE record_id = $1 ORDER BY revision",
                            {text(record_id)});
    std::vector<record_summary> found;
    for (int i = 0; i < r.size(); ++i) found.push_back(summary_of(r, i));
    return found;
  });
}

std::vector<quarantine_entry> postgresql_outbox::quarantined(int limit) {
  return read([&] {
    const auto r = db_.exec("quarantined",
                            "SELECT id, source, COALESCE(record_id, ''), problems, received_at FROM quarantine "
                            "ORDER BY id DESC LIMIT $1",
                            {number(limit)});
    std::vector<quarantine_entry> found;
    for (int i = 0; i < r.size(); ++i) {
      found.push_back({r.number(i, 0), r.text(i, 1), r.text(i, 2), r.text(i, 3), r.number(i, 4)});
    }
    return found;
  });
}

std::optional<std::string> postgresql_outbox::write_problem() {
  const std::string where = "the store (PostgreSQL " + db_.where() + ")";
  try {
    if (!db_.ok()) connect_again();
    const auto r = db_.exec("writable", "SELECT pg_is_in_recovery(), current_setting('transaction_read_only')");
    if (as_bool(r.text(0, 0))) return where + " is a read-only standby: point store.url at the primary";
    if (r.text(0, 1) == "on") return where + " is read-only (default_transaction_read_only)";
    return std::nullopt;
  } catch (const pg_error& e) {
    return where + " cannot be reached: " + e.what();
  }
}

std::vector<open_alert> postgresql_outbox::open_alerts() {
  return read([&] {
    const auto r = db_.exec("alerts", "SELECT key, detail, opened_at FROM alerts ORDER BY opened_at, key");
    std::vector<open_alert> found;
    for (int i = 0; i < r.size(); ++i) found.push_back({r.text(i, 0), r.text(i, 1), r.number(i, 2)});
    return found;
  });
}

void postgresql_outbox::set_alert(const open_alert& alert, bool open) {
  write("alert", [&] {
    if (open) {
      db_.exec("open alert",
               "INSERT INTO alerts (key, detail, opened_at) VALUES ($1, $2, $3) ON CONFLICT (key) DO UPDATE SET detail = $2",
               {text(alert.key), text(alert.detail), number(alert.opened_at_ms)});
    } else {
      db_.exec("close alert", "DELETE FROM alerts WHERE key = $1", {text(alert.key)});
    }
  });
}

bool postgresql_outbox::lead(std::string_view role, std::int64_t owner, std::int64_t, std::int64_t lease_ms) {
  // On the server's clock. Taken when free, when its lease ran out, or when its holder's session
  // is gone (killed: nobody waits for its lease).
  return write("lead", [&] {
    return !db_.exec("lead",
                     "INSERT INTO leases (role, owner, until) VALUES ($1, $2, " + std::string(server_ms) + " + $3) "
                     "ON CONFLICT (role) DO UPDATE SET owner = EXCLUDED.owner, until = EXCLUDED.until "
                     "WHERE leases.owner = EXCLUDED.owner OR leases.until <= " + std::string(server_ms) +
                     " OR NOT " + owner_alive("leases.owner", "$4") + " RETURNING owner",
                     {text(role), number(owner), number(lease_ms), number(lock_class_)})
                .empty();
  });
}

void postgresql_outbox::note_owner_conditions(std::int64_t owner, const std::vector<open_alert>& conditions) {
  write("note the alert conditions", [&] {
    db_.exec("conditions", "UPDATE owners SET conditions = $2 WHERE id = $1 AND conditions <> $2",
             {number(owner), text(conditions_json(conditions))});
  });
}

// A session lock on the file's name, in this schema's namespace of one-key locks beside the
// records' ids: held while one instance reads, stores and moves the file, so two instances on one
// folder never take one file together, nor move a newer file of the same name.
bool postgresql_outbox::hold_intake_file(std::string_view name) {
  const std::string key = file_key(name);
  const bool held = read([&] {
    return as_bool(db_.exec("hold file", "SELECT pg_try_advisory_lock(hashtextextended($1, $2))",
                            {text(key), number(lock_class_)})
                       .text(0, 0));
  });
  if (held) held_files_.insert(key);
  return held;
}

void postgresql_outbox::release_intake_file(std::string_view name) {
  const std::string key = file_key(name);
  held_files_.erase(key);
  try {
    if (db_.ok()) {
      db_.exec("release file", "SELECT pg_advisory_unlock(hashtextextended($1, $2))", {text(key), number(lock_class_)});
    }
  } catch (const pg_error&) {  // a lost session has let go of it already
  }
}

}  // namespace connector
