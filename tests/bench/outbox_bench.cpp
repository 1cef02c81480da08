// Outbox benchmark. Prints figures; never fails on timing.
//
// 1. Durable ingest: records/s through sqlite_outbox::enqueue (synchronous=FULL, one transaction
//    per batch, as ingest commits one file at a time) against raw batched INSERTs of the same rows
//    into a bare table with the same durability, in the same run. Goal: ratio >= 0.5.
// 2. Dequeue: the cost of claim + settle(delivered) per record with a 1,000,000-record backlog
//    against a 1,000-record one. Goal: <= 1.2x (no scan grows with the backlog).
// 3. Resident memory of this process after working through a 100,000-record backlog.
//
// Usage: outbox_bench [--large N] (default 1000000)
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

namespace {

using clock_type = std::chrono::steady_clock;
namespace fs = std::filesystem;
using namespace connector;

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

fs::path fresh(const std::string& name) {
  const fs::path p = fs::temp_directory_path() / ("outbox-bench-" + std::to_string(::getpid()) + "-" + name);
  for (const auto* suffix : {"", "-wal", "-shm"}) fs::remove(p.string() + suffix);
  return p;
}

void remove_db(const fs::path& p) {
  for (const auto* suffix : {"", "-wal", "-shm"}) fs::remove(p.string() + suffix);
}

// Fills a store with `backlog` pending records, fast (synchronous=NORMAL: this is setup).
void fill(const fs::path& path, std::size_t backlog) {
  sqlite_outbox store(path.string(), false);
  for (std::size_t done = 0; done < backlog; done += 10000) {
    store.enqueue(batch(done, std::min<std::size_t>(10000, backlog - done), backlog / 3 + 1), {}, 1);
  }
}

// Claims and delivers `n` records one lane head at a time; seconds per record.
double dequeue_cost(const fs::path& path, int n) {
  sqlite_outbox store(path.string(), true);
  const std::int64_t owner = store.register_owner("sync", 1);
  const auto start = clock_type::now();
  int done = 0;
  while (done < n) {
    for (const auto& c : store.claim(owner, 2, 60000, 2)) {
      store.settle(c, {attempt_report::result::delivered, 0, "", "{}"}, 2);
      ++done;
    }
  }
  return seconds_since(start) / n;
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t large = 1000000;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--large") && i + 1 < argc) large = std::stoul(argv[++i]);
  }

  // 1. Durable ingest vs raw batched inserts, both synchronous=FULL, 100 records per batch.
  constexpr std::size_t records = 20000, per_batch = 100;
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

  // 2. Dequeue cost against the size of the backlog.
  const fs::path small_db = fresh("small"), large_db = fresh("large");
  fill(small_db, 1000);
  const auto fill_start = clock_type::now();
  fill(large_db, large);
  const double fill_s = seconds_since(fill_start);
  const double small_cost = dequeue_cost(small_db, 500);
  const double large_cost = dequeue_cost(large_db, 500);
  std::printf("dequeue (claim + settle delivered, synchronous=FULL), 500 records:\n");
  std::printf("  backlog 1,000         %9.1f us/record\n", small_cost * 1e6);
  std::printf("  backlog %-12zu  %9.1f us/record   (filled in %.1f s)\n", large, large_cost * 1e6, fill_s);
  std::printf("  ratio                 %9.2f   (goal: <= 1.2)\n", large_cost / small_cost);
  remove_db(small_db);
  remove_db(large_db);

  // 3. Memory with a 100,000-record backlog, in a fresh process (the fill's memory must not
  //    count): lanes are read one head at a time, never whole.
  const fs::path memory_db = fresh("memory");
  fill(memory_db, 100000);
  std::fflush(stdout);  // the child must not print the parent's buffered lines again
  const pid_t child = fork();
  if (child == 0) {
    const long before = rss_kib();
    sqlite_outbox store(memory_db.string(), true);
    const std::int64_t owner = store.register_owner("sync", 1);
    store.status(2);
    for (int i = 0; i < 2000; ++i) {
      for (const auto& c : store.claim(owner, 2, 60000, 2)) store.settle(c, {attempt_report::result::delivered, 0, "", "{}"}, 2);
    }
    std::printf("resident memory working through a 100,000-record backlog: %.1f MB (%.1f MB before opening it)\n",
                rss_kib() / 1024.0, before / 1024.0);
    std::fflush(stdout);
    _exit(0);
  }
  waitpid(child, nullptr, 0);
  remove_db(memory_db);
  return 0;
}
