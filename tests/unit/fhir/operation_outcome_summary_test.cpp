// The EHR's OperationOutcome in one line for the sync log: what it says, without the patient data
// an EHR may quote in its diagnostics.
#include <string>

#include <gtest/gtest.h>

#include "fhir/transaction_response.h"

namespace {

using fhir::summarize_operation_outcome;

const std::string ellipsis = "\u2026";

std::string outcome(const std::string& issues_json) {
  return R"({"resourceType":"OperationOutcome","issue":[)" + issues_json + "]}";
}

std::string issue(const std::string& diagnostics, const std::string& expression = "") {
  std::string json = R"({"severity":"error","code":"invalid","diagnostics":")" + diagnostics + '"';
  if (!expression.empty()) json += R"(,"expression":[")" + expression + R"("])";
  return json + "}";
}

// True when `text` is well-formed UTF-8.
bool valid_utf8(const std::string& text) {
  for (std::size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    const std::size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (n == 0 || i + n > text.size()) return false;
    for (std::size_t k = 1; k < n; ++k) {
      if ((static_cast<unsigned char>(text[i + k]) & 0xC0) != 0x80) return false;
    }
    i += n;
  }
  return true;
}

TEST(summarize_operation_outcome, gives_severity_code_diagnostics_and_expression) {
  EXPECT_EQ(summarize_operation_outcome(outcome(issue("Unknown code in system", "Procedure.code.coding[0]"))),
            "error invalid: Unknown code in system (Procedure.code.coding[0])");
  EXPECT_EQ(summarize_operation_outcome(outcome(issue("Unknown code in system"))),
            "error invalid: Unknown code in system");
}

TEST(summarize_operation_outcome, uses_details_text_when_there_are_no_diagnostics) {
  EXPECT_EQ(summarize_operation_outcome(
                outcome(R"({"severity":"fatal","code":"security","details":{"text":"Access denied"}})")),
            "fatal security: Access denied");
}

TEST(summarize_operation_outcome, quoted_values_become_an_ellipsis) {
  EXPECT_EQ(summarize_operation_outcome(outcome(issue("Value 'Smith' is not allowed"))),
            "error invalid: Value " + ellipsis + " is not allowed");
  EXPECT_EQ(summarize_operation_outcome(outcome(issue(R"(Value \"Smith, Anna\" is not allowed)"))),
            "error invalid: Value " + ellipsis + " is not allowed");
  EXPECT_EQ(summarize_operation_outcome(outcome(issue("Both 'a' and 'b' are wrong"))),
            "error invalid: Both " + ellipsis + " and " + ellipsis + " are wrong");
}

TEST(summarize_operation_outcome, long_digit_runs_become_a_hash_and_short_ones_stay) {
  EXPECT_EQ(summarize_operation_outcome(outcome(issue("MRN 0012345 not found; HTTP 422 after 3 tries"))),
            "error invalid: MRN # not found; HTTP 422 after 3 tries");
  EXPECT_EQ(summarize_operation_outcome(outcome(issue("code 1234 and 123"))), "error invalid: code # and 123");
}

TEST(summarize_operation_outcome, the_expression_is_redacted_too) {
  const auto s = summarize_operation_outcome(outcome(issue("bad", "Patient.identifier.where(value='0012345')")));
  EXPECT_EQ(s.find("0012345"), std::string::npos) << s;
  EXPECT_NE(s.find("(Patient.identifier.where(value="), std::string::npos) << s;
}

TEST(summarize_operation_outcome, a_realistic_message_loses_the_patients_name_and_birth_date) {
  const std::string json = outcome(
      issue("Invalid value 'Zebediah' for Patient.name[0].given[0]", "Patient.name[0].given[0]") + "," +
      issue(R"(Patient.birthDate \"1961-02-03\" is after the date of the procedure)", "Patient.birthDate") + "," +
      issue("Patient with birthDate 1961-02-03 and MRN 48151623 already exists"));
  const auto s = summarize_operation_outcome(json);
  EXPECT_EQ(s.find("Zebediah"), std::string::npos) << s;
  EXPECT_EQ(s.find("1961-02-03"), std::string::npos) << s;
  EXPECT_EQ(s.find("1961"), std::string::npos) << s;
  EXPECT_EQ(s.find("48151623"), std::string::npos) << s;
  // What IT staff need stays: which element, what went wrong.
  EXPECT_NE(s.find("error invalid: Invalid value " + ellipsis + " for Patient.name[0].given[0] (Patient.name[0].given[0])"),
            std::string::npos)
      << s;
  EXPECT_NE(s.find("Patient.birthDate " + ellipsis + " is after the date of the procedure (Patient.birthDate)"),
            std::string::npos)
      << s;
}

TEST(summarize_operation_outcome, an_unquoted_birth_date_loses_its_month_and_day_too) {
  const auto s = summarize_operation_outcome(outcome(issue("Patient with birthDate 1961-02-03 already exists")));
  EXPECT_EQ(s.find("1961"), std::string::npos) << s;
  EXPECT_EQ(s.find("-02-03"), std::string::npos) << s;
}

TEST(summarize_operation_outcome, an_apostrophe_before_a_quoted_value_does_not_expose_it) {
  const auto s = summarize_operation_outcome(outcome(issue("Patient's given name 'Zebediah' is not allowed")));
  EXPECT_EQ(s.find("Zebediah"), std::string::npos) << s;
}

TEST(summarize_operation_outcome, shows_three_issues_then_how_many_more) {
  const std::string five = outcome(issue("one") + "," + issue("two") + "," + issue("three") + "," + issue("four") +
                                   "," + issue("five"));
  EXPECT_EQ(summarize_operation_outcome(five),
            "error invalid: one; error invalid: two; error invalid: three; and 2 more");
  const std::string three = outcome(issue("one") + "," + issue("two") + "," + issue("three"));
  EXPECT_EQ(summarize_operation_outcome(three), "error invalid: one; error invalid: two; error invalid: three");
}

TEST(summarize_operation_outcome, is_at_most_300_bytes) {
  const auto s = summarize_operation_outcome(outcome(issue(std::string(1000, 'x'))));
  EXPECT_EQ(s.size(), 300u);
  EXPECT_EQ(s.rfind("error invalid: xxx", 0), 0u) << s;
  EXPECT_TRUE(s.ends_with("...")) << s;
}

TEST(summarize_operation_outcome, truncation_keeps_utf8_whole) {
  // Each cut position at a different offset inside a multi-byte character.
  for (int pad = 0; pad < 4; ++pad) {
    std::string text(static_cast<std::size_t>(pad), 'a');
    for (int i = 0; i < 200; ++i) text += "\u00e9\u20ac";  // 2-byte and 3-byte characters
    const auto s = summarize_operation_outcome(outcome(issue(text)));
    EXPECT_LE(s.size(), 300u) << pad;
    EXPECT_GE(s.size(), 296u) << pad;
    EXPECT_TRUE(valid_utf8(s)) << pad;
    EXPECT_TRUE(s.ends_with("...")) << pad;
  }
  // Ellipses from redaction are three bytes each: cutting through them must not split one.
  std::string quoted;
  for (int i = 0; i < 150; ++i) quoted += "'v' ";
  for (int pad = 0; pad < 3; ++pad) {
    const auto s = summarize_operation_outcome(outcome(issue(std::string(static_cast<std::size_t>(pad), 'a') + quoted)));
    EXPECT_LE(s.size(), 300u) << pad;
    EXPECT_TRUE(valid_utf8(s)) << pad;
  }
}

TEST(summarize_operation_outcome, control_characters_become_spaces) {
  EXPECT_EQ(summarize_operation_outcome(outcome(issue(R"(line one\nline two\ttabbed)"))),
            "error invalid: line one line two tabbed");
}

TEST(summarize_operation_outcome, anything_else_is_empty) {
  EXPECT_EQ(summarize_operation_outcome(""), "");
  EXPECT_EQ(summarize_operation_outcome("<html>502 Bad Gateway</html>"), "");
  EXPECT_EQ(summarize_operation_outcome("Internal Server Error"), "");
  EXPECT_EQ(summarize_operation_outcome(R"({"resourceType":"Bundle","type":"transaction-response","entry":[]})"), "");
  EXPECT_EQ(summarize_operation_outcome(R"(["OperationOutcome"])"), "");
  EXPECT_EQ(summarize_operation_outcome(R"({"resourceType":"OperationOutcome")"), "");  // cut short
  EXPECT_EQ(summarize_operation_outcome(R"({"resourceType":"OperationOutcome"})"), "");
  EXPECT_EQ(summarize_operation_outcome(R"({"resourceType":"OperationOutcome","issue":"x"})"), "");
}

}  // namespace
