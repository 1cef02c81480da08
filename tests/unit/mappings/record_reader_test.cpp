// The record reader: every problem with its path, bad input of every kind handled, nothing echoed.
#include "mappings/record_reader.h"

#include <gtest/gtest.h>

#include "mappings/preempt.h"
#include "support/test_support.h"

namespace {

using test_support::edited_example;
using test_support::shipped_tables;
using Doc = rapidjson::Document;
using Alloc = Doc::AllocatorType;

mappings::read_result read(std::string_view json) { return mappings::read_record(json, shipped_tables()); }

std::vector<std::string> paths(const mappings::read_result& r) {
  std::vector<std::string> p;
  for (const auto& i : r.problems) p.push_back(i.path);
  return p;
}

std::string message_at(const mappings::read_result& r, std::string_view path) {
  for (const auto& i : r.problems) {
    if (i.path == path) return i.message;
  }
  return "<no problem at " + std::string(path) + ">";
}

TEST(record_reader, reads_the_examples) {
  for (auto kind : {"consultation", "procedure", "follow_up"}) {
    const auto r = read(test_support::read_text(test_support::source_path(
        std::string("mappings/examples/") + kind + ".json")));
    EXPECT_TRUE(r.record) << kind;
    EXPECT_TRUE(r.problems.empty()) << kind;
    EXPECT_EQ(r.record_type, kind);
  }
}

TEST(record_reader, reports_every_problem_not_just_the_first) {
  const auto r = read(edited_example("procedure", [](Doc& d, Alloc& a) {
    d.RemoveMember("recorded_at");
    d["patient"]["sex"].SetString("femme");
    d["clinician"]["npi"].SetString("1234567890");
    rapidjson::Value injections(rapidjson::kArrayType);
    for (int i = 0; i < 4; ++i) {
      rapidjson::Value inj(rapidjson::kObjectType);
      inj.AddMember("muscle", "frontalis", a).AddMember("side", "left", a);
      inj.AddMember("sites", 1, a).AddMember("units", i == 3 ? -5 : 5, a);
      injections.PushBack(inj, a);
    }
    d.AddMember("injections", injections, a);
    d["product"]["lot"].SetInt(7);
  }));
  EXPECT_FALSE(r.record);
  EXPECT_EQ(r.record_id, "PROC-2026-0001");
  const std::vector<std::string> want = {"procedure.recorded_at", "procedure.patient.sex",
                                         "procedure.clinician.npi", "procedure.product.lot",
                                         "procedure.injections[3].units"};
  for (const auto& p : want) {
    EXPECT_NE(std::find(paths(r).begin(), paths(r).end(), p), paths(r).end()) << p;
  }
  EXPECT_EQ(r.problems.size(), want.size());
  EXPECT_EQ(message_at(r, "procedure.injections[3].units"), "must be > 0");
  EXPECT_EQ(message_at(r, "procedure.clinician.npi"), "check digit is not valid (Luhn with prefix 80840)");
}

TEST(record_reader, judges_vial_capacity_even_when_other_fields_are_wrong) {
  const auto r = read(edited_example("procedure", [](Doc& d, Alloc&) {
    d["product"].RemoveMember("lot");
    d["units_discarded"].SetInt(100);  // 165 + 100 > 200
  }));
  EXPECT_EQ(paths(r), (std::vector<std::string>{"procedure.product.lot", "procedure.units_discarded"}));
}

TEST(record_reader, unknown_field_names_that_look_like_data_are_not_shown) {
  const auto r = read(edited_example("consultation", [](Doc& d, Alloc& a) {
    d.AddMember("John Smith DOB 1970-01-01", 1, a);
    d.AddMember("migrane_days", 1, a);
  }));
  ASSERT_EQ(r.problems.size(), 2u);
  EXPECT_EQ(r.problems[0].path, "consultation.(field 22)");
  EXPECT_EQ(r.problems[0].message.find("John"), std::string::npos);
  EXPECT_EQ(r.problems[1].path, "consultation.migrane_days");
}

// A surname as a key is identifier-shaped; the contract's own names are lower-case snake_case.
TEST(record_reader, capitalised_unknown_keys_are_not_shown_unless_a_known_field_miscased) {
  const auto r = read(edited_example("consultation", [](Doc& d, Alloc& a) {
    d.AddMember("Smith", 1, a);
    d.AddMember("Notes", "x", a);
  }));
  ASSERT_EQ(r.problems.size(), 2u);
  EXPECT_EQ(r.problems[0].path, "consultation.(field 22)");
  EXPECT_EQ(r.problems[1].path, "consultation.Notes");
}

TEST(record_reader, never_echoes_a_value_in_its_messages) {
  auto r = read(edited_example("consultation", [](Doc& d, Alloc& a) {
    d["patient"]["sex"].SetString("Jordan Example 1984-05-17", a);
    d["decision"].SetString("MRN-100234", a);
    d.AddMember("Jordan", "MRN-100234", a);
    d.AddMember("jordan_example", "x", a);  // shaped like a field name: shown, as a typo would be
  }));
  ASSERT_EQ(r.problems.size(), 4u);
  r.problems.pop_back();
  for (const auto& p : r.problems) {
    EXPECT_EQ(p.message.find("Jordan"), std::string::npos) << p.message;
    EXPECT_EQ(p.message.find("MRN-100234"), std::string::npos) << p.message;
    EXPECT_EQ(p.message.find("1984"), std::string::npos) << p.message;
  }
}

TEST(record_reader, malformed_json_names_line_and_column) {
  const auto r = read("{\n  \"record_type\": \"procedure\",\n  \"record_id\": \"P-1\"\n  \"revision\": 1\n}");
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_EQ(r.problems[0].path, "");
  EXPECT_NE(r.problems[0].message.find("line 4, column 3"), std::string::npos) << r.problems[0].message;
}

TEST(record_reader, truncated_input_is_an_error_not_a_crash) {
  const std::string full = test_support::read_text(test_support::source_path("mappings/examples/procedure.json"));
  for (std::size_t cut : {std::size_t{0}, std::size_t{1}, full.size() / 3, full.size() / 2, full.size() - 2}) {
    const auto r = read(full.substr(0, cut));
    EXPECT_FALSE(r.record) << cut;
    ASSERT_EQ(r.problems.size(), 1u) << cut;
    EXPECT_NE(r.problems[0].message.find("malformed JSON at line"), std::string::npos) << cut;
  }
}

TEST(record_reader, a_huge_record_is_refused_by_size) {
  std::string huge = edited_example("follow_up", [](Doc& d, Alloc& a) {
    const std::string notes(11 * 1024 * 1024, 'x');
    d.AddMember("notes", rapidjson::Value(notes.c_str(), static_cast<rapidjson::SizeType>(notes.size()), a), a);
  });
  const auto r = read(huge);
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_NE(r.problems[0].message.find("limit is 1048576 bytes"), std::string::npos) << r.problems[0].message;
}

TEST(record_reader, deep_nesting_is_refused_without_recursion) {
  for (std::size_t depth : {10'001u, 500'000u}) {
    std::string text = R"({"record_type":"consultation","extra":)";
    text += std::string(depth, '[') + std::string(depth, ']') + "}";
    const auto r = read(text);
    ASSERT_EQ(r.problems.size(), 1u) << depth;
    EXPECT_NE(r.problems[0].message.find("nested deeper than 64 levels"), std::string::npos);
  }
}

TEST(record_reader, wrong_types_name_the_expected_type) {
  const auto r = read(edited_example("consultation", [](Doc& d, Alloc& a) {
    d["headache_days_per_month"].SetString("22");
    d["aura"].SetInt(1);
    d["triggers"].SetObject();
    d["patient"].SetArray();
    d["average_pain"].SetDouble(6.5);
    d["scores"]["midas"].SetNull();
    (void)a;
  }));
  EXPECT_EQ(message_at(r, "consultation.headache_days_per_month"), "must be a whole number");
  EXPECT_EQ(message_at(r, "consultation.aura"), "must be true or false");
  EXPECT_EQ(message_at(r, "consultation.triggers"), "must be an array");
  EXPECT_EQ(message_at(r, "consultation.patient"), "must be an object");
  EXPECT_EQ(message_at(r, "consultation.average_pain"), "must be a whole number");
  EXPECT_EQ(message_at(r, "consultation.scores.midas"), "must not be null (leave the field out instead)");
}

TEST(record_reader, unknown_fields_are_errors_except_inside_extra) {
  const auto r = read(edited_example("procedure", [](Doc& d, Alloc& a) {
    d.AddMember("patinet", "x", a);
    d["product"].AddMember("lott", "x", a);
    rapidjson::Value extra(rapidjson::kObjectType);
    extra.AddMember("anything", "goes", a);
    d.AddMember("extra", extra, a);
  }));
  EXPECT_EQ(paths(r), (std::vector<std::string>{"procedure.patinet", "procedure.product.lott"}));
}

TEST(record_reader, record_type_missing_or_unknown_roots_paths_at_record) {
  const auto r = read(edited_example("procedure", [](Doc& d, Alloc& a) { d["record_type"].SetString("injection", a); }));
  EXPECT_EQ(r.record_type, "record");
  EXPECT_EQ(message_at(r, "record.record_type"), "must be one of: consultation, procedure, follow_up");
}

TEST(record_reader, preempt_without_injections_means_the_standard_layout) {
  const auto rec = test_support::example("procedure");
  const auto& p = std::get<mappings::procedure>(rec.body);
  EXPECT_FALSE(p.injections_listed);
  EXPECT_EQ(p.injections.size(), 13u);
  EXPECT_EQ(p.administered_units(), 165);  // 155 + 10 follow-the-pain
  EXPECT_EQ(p.administered_sites(), 33);
  EXPECT_TRUE(mappings::matches_preempt_layout(p.injections));
}

TEST(record_reader, reject_rules_of_the_domain_reference) {
  struct reject_case {
    const char* name;
    const char* kind;
    std::function<void(Doc&, Alloc&)> edit;
    const char* path;
  };
  auto ftp = [](Doc& d, Alloc& a, const char* muscle, int sites, double units) {
    rapidjson::Value list(rapidjson::kArrayType);
    rapidjson::Value inj(rapidjson::kObjectType);
    inj.AddMember("muscle", rapidjson::StringRef(muscle), a).AddMember("side", "left", a);
    inj.AddMember("sites", sites, a).AddMember("units", units, a);
    list.PushBack(inj, a);
    d["follow_the_pain"] = list;
  };
  const std::vector<reject_case> cases = {
      {"migraine above headache days", "consultation",
       [](Doc& d, Alloc&) { d["migraine_days_per_month"].SetInt(23); }, "consultation.migraine_days_per_month"},
      {"negative units", "procedure",
       [&](Doc& d, Alloc& a) { ftp(d, a, "temporalis", 1, -5); }, "procedure.follow_the_pain[0].units"},
      {"visit end before start", "follow_up",
       [](Doc& d, Alloc& a) { d["visit"].AddMember("end", "2026-10-12T13:59:59-05:00", a); }, "follow_up.visit.end"},
      {"NPI check digit", "consultation",
       [](Doc& d, Alloc&) { d["clinician"]["npi"].SetString("1234567894"); }, "consultation.clinician.npi"},
      {"NDC not a Botox vial", "procedure",
       [](Doc& d, Alloc&) { d["product"]["ndc"].SetString("0023-9232-05"); }, "procedure.product.ndc"},
      {"NDC disagrees with vial_units", "procedure",
       [](Doc& d, Alloc&) { d["product"]["vial_units"].SetInt(100); }, "procedure.product.vial_units"},
      {"administered plus discarded above the vials", "procedure",
       [](Doc& d, Alloc&) { d["units_discarded"].SetInt(36); }, "procedure.units_discarded"},
      {"follow-the-pain outside its muscles", "procedure",
       [&](Doc& d, Alloc& a) { ftp(d, a, "frontalis", 1, 5); }, "procedure.follow_the_pain[0].muscle"},
      {"PREEMPT follow-the-pain beyond 40 U", "procedure",
       [&](Doc& d, Alloc& a) { ftp(d, a, "trapezius", 8, 45); d["units_discarded"].SetInt(0); }, "procedure.follow_the_pain"},
      {"PREEMPT follow-the-pain beyond 8 sites", "procedure",
       [&](Doc& d, Alloc& a) { ftp(d, a, "trapezius", 9, 20); d["units_discarded"].SetInt(0); }, "procedure.follow_the_pain"},
      {"custom without injections", "procedure",
       [](Doc& d, Alloc&) { d["protocol"].SetString("custom"); }, "procedure.injections"},
      {"unknown enum value", "follow_up",
       [](Doc& d, Alloc&) { d["plan"].SetString("pause"); }, "follow_up.plan"},
      {"missing required field", "procedure",
       [](Doc& d, Alloc&) { d["product"].RemoveMember("lot"); }, "procedure.product.lot"},
  };
  for (const auto& c : cases) {
    const auto r = read(edited_example(c.kind, c.edit));
    EXPECT_FALSE(r.record) << c.name;
    EXPECT_EQ(paths(r), std::vector<std::string>{c.path}) << c.name;
  }
}

TEST(normalize_ndc, pads_the_short_segment_to_eleven_digits) {
  EXPECT_EQ(mappings::normalize_ndc("0023-3921-02"), "00023392102");
  EXPECT_EQ(mappings::normalize_ndc("12345-678-90"), "12345067890");
  EXPECT_EQ(mappings::normalize_ndc("12345-6789-0"), "12345678900");
  EXPECT_EQ(mappings::normalize_ndc("00023392102"), "00023392102");
  EXPECT_EQ(mappings::normalize_ndc("00023-3921-02"), "00023392102");  // the padded form, dashed
  EXPECT_FALSE(mappings::normalize_ndc("0023392102"));
  EXPECT_FALSE(mappings::normalize_ndc("0023-3921-0x"));
}

TEST(is_valid_npi, checks_the_luhn_digit_with_the_80840_prefix) {
  for (auto npi : {"1234567893", "1245319599", "1003000126", "1497758544"}) EXPECT_TRUE(mappings::is_valid_npi(npi)) << npi;
  for (auto npi : {"1234567890", "1245319598", "123456789", "12345678933", "123456789a"}) {
    EXPECT_FALSE(mappings::is_valid_npi(npi)) << npi;
  }
}

}  // namespace

namespace {

// Issue 9: strings FHIR R4 forbids are refused at the reader, naming the field, never echoing it.
// The example is edited as text so that raw bytes and \u escapes arrive exactly as written.
std::string example_with(std::string_view kind, std::string_view from, std::string_view to) {
  std::string text = test_support::read_text(test_support::source_path("mappings/examples/" + std::string(kind) + ".json"));
  const auto at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) text.replace(at, from.size(), to);
  return text;
}

TEST(record_reader_strings, a_control_character_is_refused_naming_the_field) {
  const auto r = read(example_with("consultation", "\"family\": \"Example\"", "\"family\": \"Exa\\u0007mple\""));
  ASSERT_FALSE(r.record);
  EXPECT_EQ(message_at(r, "consultation.patient.name.family"),
            "holds the control character U+0007, which FHIR strings may not contain");
  EXPECT_EQ(r.problems.at(0).message.find("Exa"), std::string::npos) << "the value is never echoed";
}

TEST(record_reader_strings, every_control_character_below_space_but_tab_cr_lf_is_refused_everywhere) {
  for (int c = 0; c < 0x20; ++c) {
    if (c == '\t' || c == '\r' || c == '\n') continue;
    char escape[8];
    std::snprintf(escape, sizeof escape, "\\u%04x", c);
    const auto r = read(example_with("procedure", "\"location\": \"Procedure room 1\"",
                                     "\"location\": \"Procedure " + std::string(escape) + "room 1\""));
    EXPECT_FALSE(r.record) << c;
    EXPECT_NE(message_at(r, "procedure.visit.location").find("control character"), std::string::npos) << c;
  }
}

TEST(record_reader_strings, tab_and_line_breaks_stay_allowed_in_notes_but_not_in_one_line_fields) {
  const std::string consultation = test_support::read_text(test_support::source_path("mappings/examples/consultation.json"));
  std::string with_notes = consultation;
  with_notes.insert(with_notes.find("\"record_id\""), "\"notes\": \"line one\\n\\tline two\\r\\n\",\n  ");
  EXPECT_TRUE(read(with_notes).record) << "free text may run over lines";
  const auto r = read(example_with("consultation", "\"mrn\": \"MRN-100234\"", "\"mrn\": \"MRN-100234\\n\""));
  ASSERT_FALSE(r.record);
  EXPECT_EQ(message_at(r, "consultation.patient.mrn"), "must be a single line (it holds a tab or a line break)");
  const auto given = read(example_with("consultation", "\"Jordan\"", "\"Jor\\tdan\""));
  EXPECT_EQ(message_at(given, "consultation.patient.name.given[0]"), "must be a single line (it holds a tab or a line break)");
}

TEST(record_reader_strings, invalid_utf8_is_refused_naming_the_field) {
  for (const std::string& bad : {std::string("\xff"), std::string("\xc3"), std::string("\xc0\xaf"), std::string("\xe0\x80\xaf"),
                                std::string("\xf4\x90\x80\x80")}) {
    const auto r = read(example_with("procedure", "\"lot\": \"C6211C3\"", "\"lot\": \"C62" + bad + "11C3\""));
    ASSERT_FALSE(r.record);
    EXPECT_EQ(message_at(r, "procedure.product.lot"), "is not valid UTF-8 text");
  }
  EXPECT_TRUE(read(example_with("procedure", "\"lot\": \"C6211C3\"", "\"lot\": \"C6211C3-\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"")).record)
      << "é, € and an emoji are text";
}

TEST(record_reader_strings, a_lone_surrogate_is_refused) {
  const auto low = read(example_with("consultation", "\"family\": \"Example\"", "\"family\": \"Ex\\udc00ample\""));
  ASSERT_FALSE(low.record);
  EXPECT_EQ(message_at(low, "consultation.patient.name.family"), "holds a lone UTF-16 surrogate, which is not a character");
  const auto high = read(example_with("consultation", "\"family\": \"Example\"", "\"family\": \"Ex\\ud800ample\""));
  ASSERT_FALSE(high.record) << "a high surrogate without its pair is refused by the parser, with its line and column";
  EXPECT_NE(high.problems.at(0).message.find("malformed JSON at line"), std::string::npos) << high.problems.at(0).message;
  EXPECT_TRUE(read(example_with("consultation", "\"family\": \"Example\"", "\"family\": \"Ex\\ud83d\\ude00ample\"")).record)
      << "a surrogate pair is one character";
}

TEST(record_reader_strings, invalid_utf8_outside_the_fields_refuses_the_record) {
  const std::string consultation = test_support::read_text(test_support::source_path("mappings/examples/consultation.json"));
  std::string with_extra = consultation;
  with_extra.insert(with_extra.find("\"record_id\""), "\"extra\": {\"k\": \"\xff\"},\n  ");
  const auto r = read(with_extra);
  ASSERT_FALSE(r.record);
  EXPECT_EQ(r.problems.at(0).message, "the record is not valid UTF-8 text");
}

}  // namespace
