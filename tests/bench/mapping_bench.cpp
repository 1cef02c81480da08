// Mapping benchmark. Prints figures; never fails on timing.
//
// 1. In process, per record kind: records/s of read + check + map, and the ratio of that cost to
//    the bare cost of RapidJSON parsing the same input bytes plus writing the same output bytes,
//    both measured in the same run (median of --runs passes over the same records).
// 2. Whole process: `migraine-connector map` over the mixed NDJSON file against two JavaScript
//    transformers of the same records, CPU seconds (user + system, steadier than wall time on a
//    shared machine), wall time and peak memory:
//    - tests/bench/mirth_style_transformer.mjs: written independently from the contract and the
//      domain reference only, the way a Mirth channel script is (fewer resources, about two thirds
//      of the bytes): what a clinic would otherwise run;
//    - tests/bench/node_transformer.mjs: the same Bundles as the connector, byte for byte in shape.
//
// Usage: mapping_bench [--records N] [--runs R] [--no-processes]
#include <sys/resource.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <spawn.h>
#include <string>
#include <unistd.h>
#include <unordered_map>
#include <vector>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "mappings/bundle_mapper.h"
#include "mappings/code_tables.h"
#include "mappings/record_reader.h"

extern char** environ;

namespace {

using clock_type = std::chrono::steady_clock;

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string to_json(const rapidjson::Value& v) {
  rapidjson::StringBuffer b;
  rapidjson::Writer<rapidjson::StringBuffer> w(b);
  v.Accept(w);
  return {b.GetString(), b.GetSize()};
}

// A deterministic mixed stream: patients with a consultation, then injection sessions 12 weeks
// apart each followed by a follow-up, written as the practice system would (one record per line).
struct generated {
  std::vector<std::string> lines;
  std::vector<int> kinds;  // 0 consultation, 1 procedure, 2 follow-up
};

generated generate(std::size_t count) {
  const std::string dir = std::string(MIGRAINE_SOURCE_DIR) + "/mappings/examples/";
  rapidjson::Document cons, proc, fu;
  const std::string cons_text = read_text(dir + "consultation.json");
  cons.Parse(cons_text.data(), cons_text.size());
  const std::string proc_text = read_text(dir + "procedure.json");
  proc.Parse(proc_text.data(), proc_text.size());
  const std::string fu_text = read_text(dir + "follow_up.json");
  fu.Parse(fu_text.data(), fu_text.size());
  generated g;
  char buf[64];
  for (int patient = 0; g.lines.size() < count; ++patient) {
    const std::string mrn = "MRN-" + std::to_string(500000 + patient);
    auto emit = [&](rapidjson::Document& d, int kind, const std::string& id) {
      d["record_id"].SetString(id.c_str(), static_cast<rapidjson::SizeType>(id.size()), d.GetAllocator());
      d["patient"]["mrn"].SetString(mrn.c_str(), static_cast<rapidjson::SizeType>(mrn.size()), d.GetAllocator());
      if (g.lines.size() < count) {
        g.lines.push_back(to_json(d));
        g.kinds.push_back(kind);
      }
    };
    const std::string p = std::to_string(patient);
    cons["headache_days_per_month"].SetInt(15 + patient % 10);
    emit(cons, 0, "C-" + p);
    for (int cycle = 1; cycle <= 3; ++cycle) {
      // Sessions on days 14, 98, 182 after the consultation's 2026-08-03: 12 weeks apart.
      const int day = 14 + (cycle - 1) * 84;
      const int month_days[] = {31, 30, 31, 30, 31, 31, 28};  // Aug..Feb
      int m = 8, d = 3 + day, y = 2026, mi = 0;
      while (d > month_days[mi]) { d -= month_days[mi]; ++mi; if (++m > 12) { m = 1; ++y; } }
      std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT10:30:00-05:00", y, m, d);
      proc["visit"]["start"].SetString(buf, proc.GetAllocator());
      proc["visit"].RemoveMember("end");
      proc["recorded_at"].SetString(buf, proc.GetAllocator());
      proc["cycle"].SetInt(cycle);
      proc.RemoveMember("next_due");
      const std::string pid = "P-" + p + "-" + std::to_string(cycle);
      emit(proc, 1, pid);
      std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT14:00:00-05:00", y, m, std::min(d + 0, 28));
      fu["procedure_record_id"].SetString(pid.c_str(), static_cast<rapidjson::SizeType>(pid.size()), fu.GetAllocator());
      fu["headache_days_per_month"].SetInt(18 - 3 * cycle);
      fu["migraine_days_per_month"].SetInt(4);
      emit(fu, 2, "F-" + p + "-" + std::to_string(cycle));
    }
  }
  return g;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

long peak_rss_kib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

struct process_run {
  double seconds;
  double cpu_seconds;  // user + system
  long max_rss_kib;
  int exit_code;
};

// Runs argv with stdout to /dev/null; wall time and peak memory from wait4.
process_run run_process(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  const auto start = clock_type::now();
  pid_t pid;
  if (posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ) != 0) {
    return {0, 0, 0, -1};
  }
  int status = 0;
  rusage usage{};
  wait4(pid, &status, 0, &usage);
  const double seconds = std::chrono::duration<double>(clock_type::now() - start).count();
  posix_spawn_file_actions_destroy(&actions);
  const double cpu = static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
                     static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
  return {seconds, cpu, usage.ru_maxrss, WIFEXITED(status) ? WEXITSTATUS(status) : -1};
}

// Whole processes, run first: Linux carries a parent's peak memory into a spawned child, so the
// children must be started before this process holds the in-process baseline's data.
int compare_processes(const generated& input, int runs) {
  const std::filesystem::path file = std::filesystem::temp_directory_path() / "migraine-bench-records.ndjson";
  {
    std::ofstream f(file, std::ios::binary);
    for (const auto& l : input.lines) f << l << '\n';
  }
  struct contender {
    const char* name;
    std::vector<std::string> argv;
    std::vector<double> wall, cpu;
    long rss = 0;
  };
  const std::string bench = std::string(MIGRAINE_SOURCE_DIR) + "/tests/bench/";
  std::vector<contender> all = {
      {"migraine-connector map", {MIGRAINE_CONNECTOR_BIN, "map", file.string()}, {}, {}},
      {"mirth-style script", {NODE_BIN, bench + "mirth_style_transformer.mjs", file.string()}, {}, {}},
      {"node transformer", {NODE_BIN, bench + "node_transformer.mjs", file.string()}, {}, {}},
  };
  const int process_runs = std::max(1, std::min(runs, 5));
  for (int run = 0; run < process_runs; ++run) {
    for (auto& c : all) {  // interleaved, so a slow spell of the machine hits all of them
      const process_run r = run_process(c.argv);
      if (r.exit_code != 0) {
        std::printf("whole process: %s failed with exit %d\n", c.name, r.exit_code);
        return 1;
      }
      c.wall.push_back(r.seconds);
      c.cpu.push_back(r.cpu_seconds);
      c.rss = std::max(c.rss, r.max_rss_kib);
    }
  }
  std::printf("whole process, %zu mixed NDJSON records, median of %d (output to /dev/null):\n",
              input.lines.size(), process_runs);
  std::printf("  %-24s %9s %9s %10s %9s\n", "", "CPU s", "wall s", "records/s", "peak MB");
  for (const auto& c : all) {
    std::printf("  %-24s %9.3f %9.3f %10.0f %9.1f\n", c.name, median(c.cpu), median(c.wall),
                input.lines.size() / median(c.wall), c.rss / 1024.0);
  }
  const contender& ours = all[0];
  for (std::size_t i = 1; i < all.size(); ++i) {
    std::printf("  speed-up over the %s: %.2fx CPU, %.2fx wall   (goal: >= 3x CPU)\n", all[i].name,
                median(all[i].cpu) / median(ours.cpu), median(all[i].wall) / median(ours.wall));
  }
  std::filesystem::remove(file);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t records = 20000;
  int runs = 5;
  bool processes = true;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--records") && i + 1 < argc) records = std::stoul(argv[++i]);
    else if (!std::strcmp(argv[i], "--runs") && i + 1 < argc) runs = std::stoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--no-processes")) processes = false;
  }

  const auto tables = mappings::code_tables::load(std::string(MIGRAINE_SOURCE_DIR) + "/mappings/code-tables.json",
                                                  mappings::mapping_config{}.local_code_system);
  const mappings::bundle_mapper mapper(mappings::mapping_config{}, tables);
  const generated input = generate(records);
  if (processes && compare_processes(input, runs) != 0) return 1;

  // Outputs once, untimed, for the bare "write the same output bytes" baseline.
  std::vector<rapidjson::Document> outputs(input.lines.size());
  std::size_t in_bytes = 0, out_bytes = 0;
  {
    std::unordered_map<std::string, mappings::patient_history> histories;
    fhir::json_writer out;
    for (std::size_t i = 0; i < input.lines.size(); ++i) {
      auto r = mappings::read_record(input.lines[i], tables);
      if (!r.record) {
        std::fprintf(stderr, "generated record %zu rejected: %s\n", i, r.problems[0].message.c_str());
        return 1;
      }
      auto& h = histories[r.record->patient.mrn];
      mapper.map(*r.record, h, out);
      h.add(std::move(*r.record));
      outputs[i].Parse(out.view().data(), out.view().size());
      in_bytes += input.lines[i].size();
      out_bytes += out.view().size();
    }
  }

  const char* names[] = {"consultation", "procedure", "follow_up"};
  std::vector<double> map_s[3], bare_s[3];
  std::size_t per_kind[3] = {};
  for (int k : input.kinds) ++per_kind[k];
  for (int run = 0; run < runs; ++run) {
    double map_t[3] = {}, bare_t[3] = {};
    std::unordered_map<std::string, mappings::patient_history> histories;
    fhir::json_writer out;
    rapidjson::StringBuffer bare_out;
    for (std::size_t i = 0; i < input.lines.size(); ++i) {
      const int k = input.kinds[i];
      auto t0 = clock_type::now();
      auto r = mappings::read_record(input.lines[i], tables);
      auto& h = histories[r.record->patient.mrn];
      mapper.map(*r.record, h, out);
      auto t1 = clock_type::now();
      h.add(std::move(*r.record));

      auto t2 = clock_type::now();
      rapidjson::Document parsed;
      parsed.Parse(input.lines[i].data(), input.lines[i].size());
      bare_out.Clear();
      rapidjson::Writer<rapidjson::StringBuffer> writer(bare_out);
      outputs[i].Accept(writer);
      auto t3 = clock_type::now();
      map_t[k] += std::chrono::duration<double>(t1 - t0).count();
      bare_t[k] += std::chrono::duration<double>(t3 - t2).count();
    }
    for (int k = 0; k < 3; ++k) {
      map_s[k].push_back(map_t[k]);
      bare_s[k].push_back(bare_t[k]);
    }
  }

  std::printf("mapping benchmark: %zu records (%zu consultations, %zu procedures, %zu follow-ups), "
              "%.1f MB in, %.1f MB out, median of %d runs, one core\n",
              input.lines.size(), per_kind[0], per_kind[1], per_kind[2], in_bytes / 1e6, out_bytes / 1e6, runs);
  std::printf("%-14s %14s %14s %22s\n", "kind", "records/s", "bare rec/s", "mapping / bare JSON");
  double map_total = 0, bare_total = 0;
  for (int k = 0; k < 3; ++k) {
    const double m = median(map_s[k]), b = median(bare_s[k]);
    map_total += m;
    bare_total += b;
    std::printf("%-14s %14.0f %14.0f %21.2fx\n", names[k], per_kind[k] / m, per_kind[k] / b, m / b);
  }
  std::printf("%-14s %14.0f %14.0f %21.2fx   (goal: <= 2x)\n", "all", input.lines.size() / map_total,
              input.lines.size() / bare_total, map_total / bare_total);
  std::printf("peak memory of this process: %.1f MB (inputs and parsed outputs held for the baseline)\n",
              peak_rss_kib() / 1024.0);

  return 0;
}
