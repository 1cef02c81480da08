// Golden cases (tests/golden/cases/<name>/): a record, optionally its patient's history, the issues
// it must raise and, for the main cases, the whole Bundle it must yield. One helper runs them all.
//
//   record.json | record.ndjson   the input (NDJSON: every line is checked, the last one mapped)
//   history.ndjson                earlier records of the patient (optional)
//   expected-issues.txt           one line per issue, in order:
//                                   reject <path>: <message>
//                                   flag <severity> <rule>
//                                   waits-for <record_id>      (hold: no bundle)
//                                   stale <revision seen>      (no-op: no bundle)
//                                 (empty: the record maps with no flag)
//   expected-bundle.json          the Bundle (optional), compared as JSON values
//
// UPDATE_GOLDENS=1 rewrites the expected files from the current output: read every change
// against the domain reference before committing it.
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <rapidjson/prettywriter.h>

#include "support/test_support.h"

namespace {

namespace fs = std::filesystem;
using namespace mappings;

std::vector<std::string> nonblank_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") != std::string::npos) lines.push_back(line);
    start = end + 1;
  }
  return lines;
}

std::string pretty(const rapidjson::Value& v) {
  rapidjson::StringBuffer buffer;
  rapidjson::PrettyWriter<rapidjson::StringBuffer> writer(buffer);
  writer.SetIndent(' ', 2);
  v.Accept(writer);
  return std::string(buffer.GetString(), buffer.GetSize()) + "\n";
}

struct outcome_text {
  std::vector<std::string> issues;
  std::string bundle;  // empty when rejected
};

outcome_text run_case(const fs::path& dir) {
  const auto& tables = test_support::shipped_tables();
  patient_history history;
  if (fs::exists(dir / "history.ndjson")) {
    for (const auto& line : nonblank_lines(test_support::read_text((dir / "history.ndjson").string()))) {
      history.add(test_support::valid_record(line));
    }
  }
  std::vector<std::string> records;
  if (fs::exists(dir / "record.ndjson")) {
    records = nonblank_lines(test_support::read_text((dir / "record.ndjson").string()));
  } else {
    records.push_back(test_support::read_text((dir / "record.json").string()));
  }
  outcome_text out;
  for (const auto& text : records) {
    auto result = read_record(text, tables);
    for (const auto& p : result.problems) out.issues.push_back("reject " + p.path + ": " + p.message);
    if (!result.record) continue;
    const auto mapped = test_support::map_record(*result.record, history);
    out.issues.clear();
    out.bundle.clear();
    switch (mapped.outcome.result) {
      case mapping_result::waits:
        out.issues.push_back("waits-for " + *mapped.outcome.waits_for_record);
        continue;
      case mapping_result::stale:
        out.issues.push_back("stale " + std::to_string(mapped.outcome.newer_revision_seen));
        continue;
      case mapping_result::mapped:
        break;
    }
    for (const auto& f : mapped.outcome.flags) {
      out.issues.push_back("flag " + std::string(to_string(f.level)) + " " + std::string(f.rule));
    }
    out.bundle = pretty(mapped.bundle);
    history.add(std::move(*result.record));
  }
  return out;
}

class golden : public testing::TestWithParam<std::string> {};

TEST_P(golden, yields_the_reviewed_issues_and_bundle) {
  const fs::path dir = fs::path(test_support::source_path("tests/golden/cases")) / GetParam();
  const outcome_text got = run_case(dir);
  const bool update = std::getenv("UPDATE_GOLDENS") != nullptr;

  const fs::path issues_file = dir / "expected-issues.txt";
  if (update) {
    std::ofstream f(issues_file);
    for (const auto& line : got.issues) f << line << "\n";
  }
  ASSERT_TRUE(fs::exists(issues_file)) << issues_file;
  EXPECT_EQ(got.issues, nonblank_lines(test_support::read_text(issues_file.string())));

  const fs::path bundle_file = dir / "expected-bundle.json";
  if (update && fs::exists(bundle_file)) std::ofstream(bundle_file) << got.bundle;
  if (fs::exists(bundle_file)) {
    rapidjson::Document want, have;
    // Parse(data, size): the NUL-terminated overload lets RapidJSON's SSE2 scan read past the end
    // of the string's buffer, which ASan reports.
    const std::string expected = test_support::read_text(bundle_file.string());
    want.Parse(expected.data(), expected.size());
    have.Parse(got.bundle.data(), got.bundle.size());
    ASSERT_FALSE(want.HasParseError()) << bundle_file;
    EXPECT_TRUE(want == have) << "the bundle differs from " << bundle_file
                              << "; run with UPDATE_GOLDENS=1 and review the diff";
  }
}

std::vector<std::string> case_names() {
  std::vector<std::string> names;
  for (const auto& d : fs::directory_iterator(test_support::source_path("tests/golden/cases"))) {
    if (d.is_directory()) names.push_back(d.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

INSTANTIATE_TEST_SUITE_P(cases, golden, testing::ValuesIn(case_names()),
                         [](const auto& info) {
                           std::string n = info.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

}  // namespace
