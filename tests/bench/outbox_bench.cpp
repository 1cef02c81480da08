// Outbox benchmark. Prints figures; never fails on timing.
//
// 1. Durable ingest: records/s through sqlite_outbox::enqueue (synchronous=FULL, one transaction
//    per batch, as ingest commits one file at a time) against raw batched INSERTs of the same rows
//    into a bare table with the same durability, in the same run. Goal: ratio >= 0.5.
// 2. Claim + settle: the cost per record of claim (with an owner, a lease and a fencing token)
//    plus settle (fenced, the EHR contact noted in the same transaction), against the design
//    before leases (issue 3's statements: no owner, no token, the contact written on its own),
//    run on a copy of the same store in the same run.
// 3. Dequeue at scale: claim + settle per record with a large backlog (default 1,000,000) against
//    a 1,000-record one. Goal: <= 1.2x (no scan grows with the backlog).
// 4. Resident memory of a fresh process working through a 100,000-record backlog.
//
// Usage: outbox_bench [--smoke] [--large N] [--records N] [--memory N]
//   --smoke: small sizes, to keep the benchmark from rotting in the test suite (seconds).
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include "connector/outbox/sqlite_outbox.h"
#include "tests/bench/bench_support.h"

namespace {

using clock_type = std::chrono::steady_clock;
namespace fs = std::filesystem;
using namespace connector;
using result = attempt_report::result;

double seconds_since(clock_type::time_point t) {
  return std::chrono::duration<double>(clock_type::now() - t).count();
}

long rss_kib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

// A realistic record body: the example procedure's size.
const std::string body = [] {
  std::ifstream in(std::string(MIGRAINE_SOURCE_DIR) + "/mappings/examples/procedure.json");
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}();

std::vector<inbound_record> batch(std::size_t from, std::size_t n, std::size_t patients) {
  std::vector<inbound_record> b;
  b.reserve(n);
  for (std::size_t i = from; i < from + n; ++i) {
    b.push_back({"R-" + std::to_string(i), 1, "procedure", "patient-" + std::to_string(i % patients), body});
  }
  return b;
}

fs::path fresh(const std::string& name) { return bench::fresh_sqlite("outbox-bench", name); }
void remove_db(const fs::path& p) { bench::remove_sqlite(p); }

// Fills a store with `backlog` pending records, fast (synchronous=NORMAL: this is setup).
void fill(const fs::path& path, std::size_t backlog) {
  sqlite_outbox store(path.string(), false);
  for (std::size_t done = 0; done < backlog; done += 10000) {
    store.enqueue(batch(done, std::min<std::size_t>(10000, backlog - done), backlog / 3 + 1), {}, 1);
  }
}

// Claims and delivers `n` records, two lane heads at a time, as the engine does; seconds per record.
double dequeue_cost(const fs::path& path, int n) {
  sqlite_outbox store(path.string(), true);
  const std::int64_t owner = store.register_owner("sync", 1);
  const auto start = clock_type::now();
  bench::deliver(store, owner, n);
  return seconds_since(start) / n;
}

// The same work with issue 3's statements: no owner, no lease, no token; the EHR contact noted in
// a transaction of its own after each settle, as before.
double dequeue_cost_before_leases(const fs::path& path, int n) {
  sqlite::database db(path.string());
  db.exec("PRAGMA synchronous = FULL");
  db.exec("PRAGMA cache_size = -32768");
  sqlite::statement ready(db.handle(),
                          "SELECT l.patient_key, r.seq FROM lanes l JOIN records r ON r.seq = l.head_seq "
                          "WHERE l.ready_at IS NOT NULL AND l.ready_at <= ?1 ORDER BY l.ready_at LIMIT ?2");
  sqlite::statement mark(db.handle(),
                         "UPDATE records SET state = 'in_flight', attempts = attempts + 1, updated_at = ?2 WHERE seq = ?1");
  sqlite::statement clear(db.handle(), "UPDATE lanes SET ready_at = NULL WHERE patient_key = ?1");
  sqlite::statement settle(db.handle(),
                           "UPDATE records SET state = 'delivered', next_attempt_at = NULL, ehr_response = ?2, "
                           "updated_at = ?3 WHERE seq = ?1");
  sqlite::statement held(db.handle(), "UPDATE records SET state = 'pending' WHERE patient_key = ?1 AND state = 'held'");
  sqlite::statement head(db.handle(),
                         "SELECT seq, state, next_attempt_at FROM records WHERE patient_key = ?1 AND "
                         "state IN ('pending', 'in_flight', 'retry_scheduled') ORDER BY seq LIMIT 1");
  sqlite::statement lane(db.handle(), "UPDATE lanes SET head_seq = ?2, ready_at = ?3 WHERE patient_key = ?1");
  sqlite::statement contact(db.handle(),
                            "INSERT INTO ehr_contact (id, reached, detail, at) VALUES (1, 1, 'HTTP 200', ?1) "
                            "ON CONFLICT (id) DO UPDATE SET reached = 1, detail = 'HTTP 200', at = ?1");
  const auto start = clock_type::now();
  int done = 0;
  while (done < n) {
    std::vector<std::pair<std::string, std::int64_t>> claimed;
    {
      sqlite::transaction tx(db);
      ready.bind(1, std::int64_t{2}).bind(2, std::int64_t{2});
      while (ready.step()) claimed.emplace_back(ready.column_text(0), ready.column_int(1));
      ready.reset();
      for (const auto& [p, seq] : claimed) {
        mark.bind(1, seq).bind(2, std::int64_t{2});
        mark.step();
        mark.reset();
        clear.bind(1, p);
        clear.step();
        clear.reset();
      }
      tx.commit();
    }
    for (const auto& [p, seq] : claimed) {
      {
        sqlite::transaction tx(db);
        settle.bind(1, seq).bind(2, "[]").bind(3, std::int64_t{2});
        settle.step();
        settle.reset();
        held.bind(1, p);
        held.step();
        held.reset();
        std::optional<std::int64_t> next;
        head.bind(1, p);
        if (head.step()) next = head.column_int(0);
        head.reset();
        lane.bind(1, p);
        next ? lane.bind(2, *next) : lane.bind_null(2);
        next ? lane.bind(3, std::int64_t{2}) : lane.bind_null(3);
        lane.step();
        lane.reset();
        tx.commit();
      }
      contact.bind(1, std::int64_t{2});
      contact.step();
      contact.reset();
      ++done;
    }
  }
  return seconds_since(start) / n;
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t large = 1000000, records = 20000, memory = 100000;
  int dequeued = 500;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--large") && i + 1 < argc) large = std::stoul(argv[++i]);
    if (!std::strcmp(argv[i], "--records") && i + 1 < argc) records = std::stoul(argv[++i]);
    if (!std::strcmp(argv[i], "--memory") && i + 1 < argc) memory = std::stoul(argv[++i]);
    if (!std::strcmp(argv[i], "--smoke")) large = 3000, records = 1000, memory = 2000, dequeued = 100;
  }

  // 1. Durable ingest vs raw batched inserts, both synchronous=FULL, 100 records per batch.
  constexpr std::size_t per_batch = 100;
  const fs::path ingest_db = fresh("ingest");
  double ingest_s = 0;
  {
    sqlite_outbox store(ingest_db.string(), true);
    const auto start = clock_type::now();
    for (std::size_t done = 0; done < records; done += per_batch) store.enqueue(batch(done, per_batch, 5000), {}, 1);
    ingest_s = seconds_since(start);
  }
  const fs::path raw_db = fresh("raw");
  double raw_s = 0;
  {
    sqlite::database db(raw_db.string());
    db.exec("PRAGMA journal_mode = WAL");
    db.exec("PRAGMA synchronous = FULL");
    db.exec("CREATE TABLE rows (record_id TEXT, revision INTEGER, record_type TEXT, patient_key TEXT, body TEXT)");
    sqlite::statement insert(db.handle(), "INSERT INTO rows VALUES (?1, ?2, ?3, ?4, ?5)");
    const auto start = clock_type::now();
    for (std::size_t done = 0; done < records; done += per_batch) {
      sqlite::transaction tx(db);
      for (const auto& r : batch(done, per_batch, 5000)) {
        insert.bind(1, r.record_id).bind(2, std::int64_t{1}).bind(3, r.record_type).bind(4, r.patient_key).bind(5, r.body);
        insert.step();
        insert.reset();
      }
      tx.commit();
    }
    raw_s = seconds_since(start);
  }
  std::printf("durable ingest, %zu records of %zu bytes in batches of %zu, synchronous=FULL:\n", records,
              body.size(), per_batch);
  std::printf("  outbox enqueue        %9.0f records/s\n", records / ingest_s);
  std::printf("  raw batched INSERTs   %9.0f records/s\n", records / raw_s);
  std::printf("  ratio                 %9.2f   (goal: >= 0.5)\n", raw_s / ingest_s);
  remove_db(ingest_db);
  remove_db(raw_db);

  // 2. Claim + settle with leases against the design before them, on copies of one store.
  const fs::path leased_db = fresh("leased"), before_db = fresh("before");
  fill(leased_db, 1000);
  fs::copy_file(leased_db, before_db);
  const double leased = dequeue_cost(leased_db, dequeued);
  const double before = dequeue_cost_before_leases(before_db, dequeued);
  std::printf("claim + settle (delivered), synchronous=FULL, %d records of a 1,000-record backlog:\n", dequeued);
  std::printf("  before leases         %9.1f us/record   (owner-less claim; contact in its own commit)\n", before * 1e6);
  std::printf("  with leases           %9.1f us/record   (owner, lease, fencing token; contact in the settle)\n",
              leased * 1e6);
  std::printf("  ratio                 %9.2f\n", leased / before);
  remove_db(leased_db);
  remove_db(before_db);

  // 3. Dequeue cost against the size of the backlog.
  const fs::path small_db = fresh("small"), large_db = fresh("large");
  fill(small_db, 1000);
  const auto fill_start = clock_type::now();
  fill(large_db, large);
  const double fill_s = seconds_since(fill_start);
  const double small_cost = dequeue_cost(small_db, dequeued);
  const double large_cost = dequeue_cost(large_db, dequeued);
  std::printf("dequeue (claim + settle delivered, synchronous=FULL), %d records:\n", dequeued);
  std::printf("  backlog 1,000         %9.1f us/record\n", small_cost * 1e6);
  std::printf("  backlog %-12zu  %9.1f us/record   (filled in %.1f s)\n", large, large_cost * 1e6, fill_s);
  std::printf("  ratio                 %9.2f   (goal: <= 1.2)\n", large_cost / small_cost);
  remove_db(small_db);
  remove_db(large_db);

  // 4. Memory with a backlog, in a fresh process (the fill's memory must not count): lanes are
  //    read one head at a time, never whole.
  const fs::path memory_db = fresh("memory");
  fill(memory_db, memory);
  std::fflush(stdout);  // the child must not print the parent's buffered lines again
  const pid_t child = fork();
  if (child == 0) {
    const long start_rss = rss_kib();
    sqlite_outbox store(memory_db.string(), true);
    const std::int64_t owner = store.register_owner("sync", 1);
    store.status(2);
    for (int i = 0; i < 2000; ++i) {
      for (const auto& c : store.claim(owner, 2, 60000, 2)) store.settle(c, {result::delivered, 0, "", "{}", false, std::nullopt}, 2);
    }
    std::printf("resident memory working through a %zu-record backlog: %.1f MB (%.1f MB before opening it)\n", memory,
                rss_kib() / 1024.0, start_rss / 1024.0);
    std::fflush(stdout);
    _exit(0);
  }
  waitpid(child, nullptr, 0);
  remove_db(memory_db);
  return 0;
}
