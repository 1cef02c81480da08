// The code tables replaced whole (SIGHUP) while a job keeps the version it started with.
#include "mappings/mapping_set.h"

#include <gtest/gtest.h>

#include "support/test_support.h"

namespace {

// The shipped tables with the consultation's encounter type text changed, as a terminologist would.
std::shared_ptr<const mappings::mapping_set> edited_tables(const std::string& text) {
  std::string s = test_support::read_text(test_support::source_path("mappings/code-tables.json"));
  const std::string old_text = R"("text": "Chronic migraine consultation")";
  const auto at = s.find(old_text);
  EXPECT_NE(at, std::string::npos);
  if (at != std::string::npos) s.replace(at, old_text.size(), R"("text": ")" + text + "\"");
  const auto config = test_support::default_config();
  return std::make_shared<const mappings::mapping_set>(
      mappings::code_tables::parse(s, config.local_code_system, "edited"), config);
}

const std::string& consultation_text(const mappings::mapping_set& set) {
  return set.tables().concept_for("encounter-type/consultation").text;
}

TEST(mapping_source, a_replacement_serves_new_readers_and_a_job_keeps_its_version) {
  mappings::mapping_source source(edited_tables("first"));
  const auto job = source.current();  // a claim being prepared
  source.replace(edited_tables("second"));
  EXPECT_EQ(consultation_text(*job), "first");
  EXPECT_EQ(consultation_text(*source.current()), "second");

  // The mapper is the one built from its own tables: a mapped consultation carries the new text.
  fhir::json_writer out;
  const auto record = test_support::example("consultation");
  source.current()->mapper().map(record, {}, out);
  EXPECT_NE(std::string(out.view()).find(R"("text":"second")"), std::string::npos);
  fhir::json_writer before;
  job->mapper().map(record, {}, before);
  EXPECT_NE(std::string(before.view()).find(R"("text":"first")"), std::string::npos);
}

}  // namespace
