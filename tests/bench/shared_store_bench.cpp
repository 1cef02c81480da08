// Shared-store benchmark (issue 13). Prints figures; never fails on timing.
//
// 1. Ingest: records/s through outbox::enqueue (100 records per transaction, as a file is one
//    transaction), the SQLite store (synchronous=FULL) against the PostgreSQL store with 1, 2
//    and 3 instances ingesting at once (threads, each with its own connection, as processes would).
// 2. Claim + settle: records/s delivered (claim two lane heads, settle each delivered with the
//    EHR contact, as the engine does) from a backlog of many patients, SQLite (one daemon per
//    store) against PostgreSQL with 1, 2 and 3 instances sharing the lanes.
// 3. Backlog: PostgreSQL's claim + settle cost per record with a 1,000,000-record backlog against
//    a 1,000-record one (no scan may grow with the backlog). The large backlog is filled with SQL
//    straight into the tables: that is setup, not what is measured.
// Both stores commit durably (fsync on, synchronous_commit on; SQLite synchronous=FULL), on the
// same machine and disk, in the same run: the ratios are what to read.
//
// Usage: shared_store_bench --pg DIR [--smoke] [--records N] [--large N]
//   DIR: a cluster from tests/pg/cluster.sh start DIR (its conninfo and password files).
//   --smoke: small sizes, to keep the benchmark from rotting in the test suite (seconds).
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "connector/outbox/postgresql_outbox.h"
#include "connector/outbox/sqlite_outbox.h"
#include "tests/bench/bench_support.h"

namespace {

using clock_type = std::chrono::steady_clock;
namespace fs = std::filesystem;
using namespace connector;
using result = attempt_report::result;

double seconds_since(clock_type::time_point t) { return std::chrono::duration<double>(clock_type::now() - t).count(); }

std::string read_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

// A realistic record body: the example procedure's size.
const std::string body = [] {
  std::ifstream in(std::string(MIGRAINE_SOURCE_DIR) + "/mappings/examples/procedure.json");
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}();

std::vector<inbound_record> batch(const std::string& prefix, std::size_t from, std::size_t n, std::size_t patients) {
  std::vector<inbound_record> b;
  b.reserve(n);
  for (std::size_t i = from; i < from + n; ++i) {
    b.push_back({prefix + std::to_string(i), 1, "procedure", prefix + "patient-" + std::to_string(i % patients), body});
  }
  return b;
}

// A PostgreSQL store in a schema of its own, dropped at the end.
class pg_schema {
 public:
  pg_schema(const std::string& dir, const std::string& name)
      : conninfo_(read_line(dir + "/conninfo")), password_(read_line(dir + "/password")), name_(name),
        admin_(conninfo_, password_) {
    admin_.run("DROP SCHEMA IF EXISTS " + name_ + " CASCADE; CREATE SCHEMA " + name_);
  }
  ~pg_schema() { admin_.run("DROP SCHEMA IF EXISTS " + name_ + " CASCADE"); }
  std::unique_ptr<outbox> open() const {
    return std::make_unique<postgresql_outbox>(
        postgresql_options{conninfo_ + " options='-csearch_path=" + name_ + "'", password_, 2000, 10, {}, {}});
  }
  void run(const std::string& sql) {
    admin_.run("SET search_path = " + name_);
    admin_.run(sql);
  }

 private:
  std::string conninfo_, password_, name_;
  postgresql::connection admin_;
};


// Runs `work(i)` on `n` threads at once; seconds from the start of all to the end of the last.
double in_parallel(int n, const std::function<void(int)>& work) {
  std::vector<std::thread> threads;
  const auto start = clock_type::now();
  for (int i = 0; i < n; ++i) threads.emplace_back(work, i);
  for (auto& t : threads) t.join();
  return seconds_since(start);
}

constexpr std::size_t per_batch = 100;

// `records` records in all, split between the instances; records/s.
double ingest(const std::function<std::unique_ptr<outbox>()>& open, int instances, std::size_t records) {
  std::vector<std::unique_ptr<outbox>> stores;
  for (int i = 0; i < instances; ++i) stores.push_back(open());
  const std::size_t each = records / instances;
  const double s = in_parallel(instances, [&](int i) {
    const std::string prefix = "I" + std::to_string(i) + "-";
    for (std::size_t done = 0; done < each; done += per_batch) stores[i]->enqueue(batch(prefix, done, per_batch, 1000), {}, 1);
  });
  return static_cast<double>(each * instances) / s;
}

// Delivers everything the store holds, `instances` at once; records/s.
double deliver_all(const std::function<std::unique_ptr<outbox>()>& open, int instances, std::size_t records) {
  std::vector<std::unique_ptr<outbox>> stores;
  std::vector<std::int64_t> owners;
  for (int i = 0; i < instances; ++i) {
    stores.push_back(open());
    owners.push_back(stores.back()->register_owner("daemon", 1));
  }
  std::atomic<std::size_t> done{0};
  const double s = in_parallel(instances, [&](int i) {
    int idle = 0;
    while (done.load() < records && idle < 1000) {
      const auto claimed = stores[i]->claim(owners[i], 2, 60000, 2);
      idle = claimed.empty() ? idle + 1 : 0;
      for (const auto& c : claimed) {
        stores[i]->settle(c, {result::delivered, 0, "", "[]", false, ehr_contact{true, "HTTP 200"}}, 2);
        ++done;
      }
    }
  });
  for (int i = 0; i < instances; ++i) stores[i]->release_owner(owners[i], 3);
  return static_cast<double>(done.load()) / s;
}

// claim + settle of `n` records, one instance; seconds per record.
double dequeue_cost(outbox& store, int n) {
  const std::int64_t owner = store.register_owner("daemon", 1);
  const auto start = clock_type::now();
  bench::deliver(store, owner, n);
  const double s = seconds_since(start) / n;
  store.release_owner(owner, 3);
  return s;
}

// `backlog` pending records of backlog/3 patients, straight into the tables (the lanes' heads
// are each patient's first record), as enqueue would leave them.
void fill_pg(pg_schema& schema, std::size_t backlog) {
  schema.open();  // creates the tables
  const std::string n = std::to_string(backlog), patients = std::to_string(backlog / 3 + 1);
  schema.run("INSERT INTO records (record_id, revision, record_type, patient_key, body, state, received_at, updated_at) "
             "SELECT 'B-' || i, 1, 'procedure', 'patient-' || (i % " + patients + "), repeat('x', " +
             std::to_string(body.size()) + "), 'pending', 1, 1 FROM generate_series(0, " + n + " - 1) AS i; "
             "INSERT INTO lanes (patient_key, head_seq, ready_at) "
             "SELECT patient_key, MIN(seq), 1 FROM records GROUP BY patient_key");
  // Hint bits and statistics set now, not by the first claims that read the new rows.
  schema.run("VACUUM ANALYZE records");
  schema.run("VACUUM ANALYZE lanes");
}

// One statement's round trip on a connection of its own: what every statement of the store pays.
double round_trip_s(const std::string& dir) {
  postgresql::connection c(read_line(dir + "/conninfo"), read_line(dir + "/password"));
  constexpr int n = 2000;
  const auto start = clock_type::now();
  for (int i = 0; i < n; ++i) c.exec("one", "SELECT 1");
  return seconds_since(start) / n;
}

}  // namespace

int main(int argc, char** argv) {
  std::string pg_dir;
  std::size_t records = 6000, large = 1000000;
  int dequeued = 1000;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--pg") && i + 1 < argc) pg_dir = argv[++i];
    if (!std::strcmp(argv[i], "--records") && i + 1 < argc) records = std::stoul(argv[++i]);
    if (!std::strcmp(argv[i], "--large") && i + 1 < argc) large = std::stoul(argv[++i]);
    if (!std::strcmp(argv[i], "--smoke")) records = 600, large = 3000, dequeued = 100;
  }
  if (pg_dir.empty()) {
    std::fprintf(stderr, "usage: shared_store_bench --pg DIR [--smoke] [--records N] [--large N]\n"
                         "  DIR: tests/pg/cluster.sh start DIR\n");
    return 2;
  }
  const std::string tag = "bench_" + std::to_string(::getpid());
  try {
    // The server's first writes allocate its WAL and warm its caches: not what is measured.
    {
      pg_schema warm(pg_dir, tag + "_warm");
      ingest([&] { return warm.open(); }, 1, 1000);
      deliver_all([&] { return warm.open(); }, 1, 1000);
    }
    std::printf("PostgreSQL round trip (SELECT 1 over the Unix socket): %.0f us\n", round_trip_s(pg_dir) * 1e6);
    // 1. Ingest.
    std::printf("ingest, %zu records of %zu bytes in transactions of %zu, committed durably:\n", records, body.size(),
                per_batch);
    const fs::path sqlite_path = bench::fresh_sqlite("shared-bench", "ingest");
    const double sqlite_rate = ingest([&] { return std::make_unique<sqlite_outbox>(sqlite_path.string(), true); }, 1, records);
    std::printf("  SQLite, 1 instance          %8.0f records/s\n", sqlite_rate);
    for (int n = 1; n <= 3; ++n) {
      pg_schema schema(pg_dir, tag + "_ingest" + std::to_string(n));
      const double rate = ingest([&] { return schema.open(); }, n, records);
      std::printf("  PostgreSQL, %d instance%s    %8.0f records/s   ratio to SQLite %.2f\n", n, n == 1 ? " " : "s", rate,
                  rate / sqlite_rate);
    }

    // 2. Claim + settle from a backlog of `records` records.
    std::printf("claim + settle (delivered, contact noted), %zu records of 1,000 patients:\n", records);
    const double sqlite_delivery =
        deliver_all([&] { return std::make_unique<sqlite_outbox>(sqlite_path.string(), true); }, 1, records);
    std::printf("  SQLite, 1 instance          %8.0f records/s\n", sqlite_delivery);
    bench::remove_sqlite(sqlite_path);
    for (int n = 1; n <= 3; ++n) {
      pg_schema schema(pg_dir, tag + "_deliver" + std::to_string(n));
      ingest([&] { return schema.open(); }, 1, records);
      const double rate = deliver_all([&] { return schema.open(); }, n, records);
      std::printf("  PostgreSQL, %d instance%s    %8.0f records/s   ratio to SQLite %.2f\n", n, n == 1 ? " " : "s", rate,
                  rate / sqlite_delivery);
    }

    // 3. Cost per record against the backlog.
    std::printf("PostgreSQL claim + settle, 1 instance, %d records:\n", dequeued);
    // The small backlog before and after the large one: their mean is the baseline, their spread
    // says how much the machine's noise is.
    const auto small_backlog = [&](const char* name) {
      pg_schema schema(pg_dir, tag + name);
      fill_pg(schema, 1000);
      return dequeue_cost(*schema.open(), dequeued);
    };
    const double small_before = small_backlog("_small1");
    double large_cost = 0, fill_s = 0;
    {
      pg_schema schema(pg_dir, tag + "_large");
      const auto fill_start = clock_type::now();
      fill_pg(schema, large);
      fill_s = seconds_since(fill_start);
      large_cost = dequeue_cost(*schema.open(), dequeued);
    }
    const double small_after = small_backlog("_small2");
    const double small_cost = (small_before + small_after) / 2;
    std::printf("  backlog 1,000               %8.1f us/record   (%.1f before, %.1f after the large one)\n",
                small_cost * 1e6, small_before * 1e6, small_after * 1e6);
    std::printf("  backlog %-12zu        %8.1f us/record   (filled in %.1f s)\n", large, large_cost * 1e6, fill_s);
    std::printf("  ratio                       %8.2f   (goal: <= 1.2)\n", large_cost / small_cost);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "shared_store_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
