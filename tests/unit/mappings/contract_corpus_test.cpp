// The shared contract corpus (tests/contract): every valid record reads, and every invalid one is
// rejected naming the field its .expect.json says. The JSON Schema check reads the same corpus.
#include <filesystem>

#include <gtest/gtest.h>

#include "fhir/json_value.h"
#include "support/test_support.h"

namespace {

namespace fs = std::filesystem;

std::vector<std::string_view> lines_of(const std::string& text) {
  std::vector<std::string_view> lines;
  std::string_view all = text;
  while (!all.empty()) {
    auto end = all.find('\n');
    std::string_view line = all.substr(0, end);
    if (line.find_first_not_of(" \r\t") != std::string_view::npos) lines.push_back(line);
    if (end == std::string_view::npos) break;
    all.remove_prefix(end + 1);
  }
  return lines;
}

TEST(contract_corpus, every_valid_record_is_accepted) {
  int count = 0;
  for (const auto& f : fs::directory_iterator(test_support::source_path("tests/contract/valid"))) {
    const std::string text = test_support::read_text(f.path().string());
    std::vector<std::string_view> records;
    if (f.path().extension() == ".ndjson") {
      records = lines_of(text);
    } else {
      records.push_back(text);
    }
    for (auto rec : records) {
      ++count;
      const auto r = mappings::read_record(rec, test_support::shipped_tables());
      EXPECT_TRUE(r.record) << f.path().filename();
      for (const auto& p : r.problems) ADD_FAILURE() << f.path().filename() << ": " << p.path << ": " << p.message;
    }
  }
  EXPECT_GE(count, 20);
}

TEST(contract_corpus, every_invalid_record_is_rejected_naming_its_field) {
  int count = 0;
  for (const auto& f : fs::directory_iterator(test_support::source_path("tests/contract/invalid"))) {
    const std::string name = f.path().filename().string();
    if (name.ends_with(".expect.json")) continue;
    const std::string expect_path =
        f.path().parent_path().string() + "/" + f.path().stem().string() + ".expect.json";
    fhir::json_value expect;
    ASSERT_EQ(fhir::parse_json_value(test_support::read_text(expect_path), expect, false), "") << expect_path;
    const std::string want_path = expect.find("path")->text;
    const auto* contains = expect.find("message_contains");

    // An .ndjson case is rejected when any of its lines is.
    const std::string text = test_support::read_text(f.path().string());
    std::vector<std::string_view> records;
    if (f.path().extension() == ".ndjson") {
      records = lines_of(text);
    } else {
      records.push_back(text);
    }
    bool named = false;
    std::string got;
    for (auto rec : records) {
      const auto r = mappings::read_record(rec, test_support::shipped_tables());
      for (const auto& p : r.problems) {
        got += "\n  " + p.path + ": " + p.message;
        if (p.path == want_path && (contains == nullptr || p.message.find(contains->text) != std::string::npos ||
                                    records.size() > 1)) {
          named = true;
        }
      }
    }
    ++count;
    EXPECT_TRUE(named) << name << ": expected a problem at '" << want_path << "', got:" << got;
  }
  EXPECT_GE(count, 100);
}

}  // namespace
