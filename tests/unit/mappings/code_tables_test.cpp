// The editable code tables: loaded with the local system substituted, and refused when incomplete.
#include "mappings/code_tables.h"

#include <gtest/gtest.h>

#include "support/test_support.h"

namespace {

TEST(code_tables, shipped_tables_carry_the_verified_codes) {
  const auto& t = test_support::shipped_tables();
  EXPECT_EQ(t.concept_for("billing/cpt-64615").codings.at(0).code, "64615");
  EXPECT_EQ(t.concept_for("billing/j0585").codings.at(0).code, "J0585");
  EXPECT_EQ(t.concept_for("observation/pain-severity").codings.at(0).code, "72514-3");
  EXPECT_EQ(t.concept_for("laterality/left").codings.at(0).code, "7771000");
  ASSERT_NE(t.product("00023392102"), nullptr);
  EXPECT_EQ(t.product("00023392102")->vial_units, 200);
  EXPECT_EQ(t.product("00023392102")->ndc10, "0023-3921-02");
  EXPECT_EQ(t.product("00023114501")->vial_units, 100);
  EXPECT_EQ(t.product("00023392101"), nullptr);
  EXPECT_NE(t.diagnosis("G43.E19"), nullptr);
  EXPECT_EQ(t.diagnosis("G43.909"), nullptr);
}

TEST(code_tables, local_codes_use_the_configured_system) {
  const auto& muscle = test_support::shipped_tables().concept_for("muscle/temporalis");
  EXPECT_EQ(muscle.codings.at(0).system, test_support::default_config().local_code_system);
}

TEST(code_tables, a_missing_concept_is_refused_at_load_with_its_key) {
  std::string text = test_support::read_text(test_support::source_path("mappings/code-tables.json"));
  const std::string key = "\"billing/j0585\"";
  text.replace(text.find(key), key.size(), "\"billing/j0585-renamed\"");
  try {
    mappings::code_tables::parse(text, "urn:local", "edited.json");
    FAIL() << "expected the load to fail";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("billing/j0585"), std::string::npos) << e.what();
  }
}

}  // namespace
