// The configuration file: defaults, relative paths, and clear refusals.
#include "connector/config/config.h"

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

namespace {

namespace fs = std::filesystem;

std::string write_config(const std::string& name, const std::string& text) {
  const fs::path dir = fs::temp_directory_path() / "migraine-connector-config-test";
  fs::create_directories(dir);
  const fs::path file = dir / name;
  std::ofstream(file) << text;
  return file.string();
}

std::string error_of(const std::string& text) {
  try {
    connector::load_config(write_config("bad.jsonc", text));
  } catch (const connector::config_error& e) {
    return e.what();
  }
  return "";
}

TEST(config, every_setting_has_a_default) {
  const auto c = connector::load_config(std::nullopt);
  EXPECT_EQ(c.mapping.identifier_system, "https://clinic.example/fhir");
  EXPECT_TRUE(c.code_tables_path.ends_with("mappings/code-tables.json"));
  EXPECT_EQ(c.ehr.write_mode, "auto");
}

TEST(config, ehr_write_mode_is_one_of_four) {
  for (const auto* mode : {"auto", "transaction", "batch", "single"}) {
    const auto c = connector::load_config(write_config("mode.jsonc", std::string(R"({"ehr": {"write_mode": ")") + mode + "\"}}"));
    EXPECT_EQ(c.ehr.write_mode, mode);
  }
  EXPECT_EQ(error_of(R"({"ehr": {"write_mode": "bulk"}})"),
            "setting ehr.write_mode must be one of auto, transaction, batch, single (not \"bulk\")");
}

TEST(config, the_ehrs_own_parties_left_out_types_and_the_note_format) {
  const auto d = connector::load_config(std::nullopt);
  EXPECT_EQ(d.ehr.patient, "create");
  EXPECT_EQ(d.ehr.practitioner, "create");
  EXPECT_EQ(d.ehr.note_format, "text");
  EXPECT_TRUE(d.ehr.left_out.empty()) << "the defaults live with the fold (folded_note.h)";
  const auto c = connector::load_config(write_config("parties.jsonc", R"({"ehr": {"patient": "match",
    "practitioner": "match", "note_format": "xhtml", "left_out": {"ChargeItem": "skip", "MedicationStatement": "fold"}}})"));
  EXPECT_EQ(c.ehr.patient, "match");
  EXPECT_EQ(c.ehr.practitioner, "match");
  EXPECT_EQ(c.ehr.note_format, "xhtml");
  EXPECT_EQ(c.ehr.left_out.at("ChargeItem"), "skip");
  EXPECT_EQ(c.ehr.left_out.at("MedicationStatement"), "fold");
  EXPECT_EQ(error_of(R"({"ehr": {"patient": "find"}})"), "setting ehr.patient must be create or match (not \"find\")");
  EXPECT_EQ(error_of(R"({"ehr": {"note_format": "pdf"}})"), "setting ehr.note_format must be text or xhtml (not \"pdf\")");
  EXPECT_EQ(error_of(R"({"ehr": {"left_out": {"Claim": "skip"}}})"),
            "setting ehr.left_out.Claim: not a resource type the connector writes");
  EXPECT_EQ(error_of(R"({"ehr": {"left_out": {"ChargeItem": "drop"}}})"), "setting ehr.left_out.ChargeItem must be fold or skip");
}

TEST(config, reads_comments_and_resolves_paths_next_to_the_file) {
  const std::string path = write_config("ok.jsonc", R"({
    // the clinic's own namespace
    "mapping": { "identifier_system": "urn:oid:2.16.840.1.113883.3.9999",
                 "clinic_id": "north", "code_tables": "tables/codes.json" }
  })");
  const auto c = connector::load_config(path);
  EXPECT_EQ(c.mapping.identifier_system, "urn:oid:2.16.840.1.113883.3.9999");
  EXPECT_EQ(c.mapping.local_code_system, "urn:oid:2.16.840.1.113883.3.9999/CodeSystem/migraine-local");
  EXPECT_EQ(c.mapping.clinic_id, "north");
  EXPECT_EQ(c.code_tables_path, (fs::path(path).parent_path() / "tables/codes.json").string());
}

TEST(config, refuses_typos_wrong_types_and_unsafe_uris) {
  EXPECT_EQ(error_of(R"({"maping": {}})"), "unknown setting maping");
  EXPECT_EQ(error_of(R"({"mapping": {"clinic_name": 3}})"), "setting mapping.clinic_name must be a non-empty string");
  EXPECT_NE(error_of(R"({"mapping": {"identifier_system": "https://x.example/a|b"}})").find("mapping.identifier_system"),
            std::string::npos);
  EXPECT_NE(error_of("{ nope").find("line 1"), std::string::npos);
  EXPECT_NE(error_of("").find("malformed JSON"), std::string::npos);
}

}  // namespace

namespace {

TEST(config, a_postgresql_store_needs_its_url_and_the_shared_patient_key_and_never_a_password_inline) {
  const auto c = connector::load_config(write_config("pg.jsonc", R"({"store": {"kind": "postgresql",
    "url": "postgresql://connector@db1.clinic.local/migraine", "password_file": "pg.password",
    "patient_key_file": "patients.key"}})"));
  EXPECT_EQ(c.store.what, connector::store_config::kind::postgresql);
  EXPECT_EQ(c.store.url, "postgresql://connector@db1.clinic.local/migraine");
  ASSERT_TRUE(c.store.password_file);
  EXPECT_EQ(fs::path(*c.store.password_file).filename(), "pg.password");
  EXPECT_EQ(connector::load_config(write_config("default.jsonc", "{}")).store.what, connector::store_config::kind::sqlite);

  EXPECT_NE(error_of(R"({"store": {"kind": "mysql"}})").find("store.kind"), std::string::npos);
  EXPECT_NE(error_of(R"({"store": {"kind": "postgresql", "patient_key_file": "k"}})").find("store.url is required"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"store": {"kind": "postgresql", "url": "host=db1 dbname=q"}})").find("store.patient_key_file"),
            std::string::npos);
  const std::string inline_password =
      error_of(R"({"store": {"kind": "postgresql", "url": "postgresql://u:s3cret@db1/q", "patient_key_file": "k"}})");
  EXPECT_NE(inline_password.find("holds a password"), std::string::npos) << inline_password;
  EXPECT_EQ(inline_password.find("s3cret"), std::string::npos) << "the message never repeats it";
  const std::string unreadable =
      error_of(R"({"store": {"kind": "postgresql", "url": "postgresql://u:s3cr%zzet@db1/q", "patient_key_file": "k"}})");
  EXPECT_NE(unreadable.find("cannot be read"), std::string::npos) << unreadable;
  EXPECT_EQ(unreadable.find("s3cr"), std::string::npos) << "libpq's message would quote it";
  EXPECT_NE(error_of(R"({"store": {"kind": "postgresql", "url": "host=db1 password=x", "patient_key_file": "k"}})")
                .find("holds a password"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"store": {"kind": "postgresql", "url": "host=db1", "patient_key_file": "k", "path": "x.db"}})")
                .find("store.path is for a SQLite store"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"store": {"url": "host=db1"}})").find("for store.kind postgresql"), std::string::npos);
}

}  // namespace
