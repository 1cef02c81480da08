// The EHR's OperationOutcome in one line for the sync log: what kind of problem and where, and
// nothing of the free text in which an EHR may quote the patient.
#include <string>

#include <gtest/gtest.h>

#include "fhir/transaction_response.h"

namespace {

using fhir::summarize_operation_outcome;

std::string outcome(const std::string& issues_json) {
  return R"({"resourceType":"OperationOutcome","issue":[)" + issues_json + "]}";
}

std::string issue(const std::string& diagnostics, const std::string& expression = "",
                  const std::string& severity = "error", const std::string& code = "invalid") {
  std::string json = R"({"severity":")" + severity + R"(","code":")" + code + R"(","diagnostics":")" + diagnostics + '"';
  if (!expression.empty()) json += R"(,"expression":[")" + expression + R"("])";
  return json + "}";
}

TEST(summarize_operation_outcome, gives_severity_code_and_where) {
  EXPECT_EQ(summarize_operation_outcome(outcome(issue("Unknown code in system", "Procedure.code.coding[0]", "error",
                                                      "code-invalid"))),
            "error code-invalid at Procedure.code.coding[0]");
  EXPECT_EQ(summarize_operation_outcome(outcome(issue("Unknown code in system"))), "error invalid");
  EXPECT_EQ(summarize_operation_outcome(outcome(R"({"severity":"warning","code":"required","location":["Patient.name"]})")),
            "warning required at Patient.name");
}

TEST(summarize_operation_outcome, keeps_a_machine_message_code) {
  EXPECT_EQ(summarize_operation_outcome(outcome(
                R"({"severity":"error","code":"invalid","details":{"coding":[{"code":"MSG_PARAM_INVALID"}],"text":"Jane Doe"}})")),
            "error invalid MSG_PARAM_INVALID");
  // A "code" that is free text is not a code.
  EXPECT_EQ(summarize_operation_outcome(outcome(
                R"({"severity":"error","code":"invalid","details":{"coding":[{"code":"Jane Doe 1961"}]}})")),
            "error invalid");
}

// Every way the review found to slip patient data through a redaction of free text: none of it
// reaches the summary, because free text never does.
TEST(summarize_operation_outcome, no_free_text_reaches_the_summary) {
  const char* leaks[] = {
      "Invalid value 'Zebediah' for Patient.name[0].given[0]", "Patient with birthDate 1961-02-03 already exists",
      "Patient's given name 'Zebediah' is not allowed",        "Patient Smith, John already exists",
      "given=Jane&family=Doe",                                 "\u201cJohn Smith\u201d",
      "`Jane Doe`",                                            "'Jane Doe",
      "MRN A12B34",                                            "123 456 789",
      "born 3/4/5",                                            "12-Mar-1961",
      "March 12, 1961",
  };
  for (const char* text : leaks) {
    const auto s = summarize_operation_outcome(outcome(issue(text, "Patient.name[0].given[0]")));
    EXPECT_EQ(s, "error invalid at Patient.name[0].given[0]") << text;
  }
}

TEST(summarize_operation_outcome, severity_and_code_outside_fhirs_value_sets_are_not_shown) {
  const auto s = summarize_operation_outcome(outcome(R"({"severity":"Jane Doe 1970-01-01","code":"MRN 12345678"})"));
  EXPECT_EQ(s, "unknown-severity other");
}

TEST(summarize_operation_outcome, the_path_stops_before_any_value) {
  EXPECT_EQ(summarize_operation_outcome(outcome(issue("x", "Patient.identifier.where(value='0012345')"))),
            "error invalid at Patient.identifier.where");
  EXPECT_EQ(summarize_operation_outcome(outcome(issue("x", "Patient.name = Smith"))), "error invalid at Patient.name");
}

TEST(summarize_operation_outcome, shows_three_issues_then_how_many_more) {
  const std::string five = outcome(issue("one") + "," + issue("two", "A") + "," + issue("three") + "," +
                                   issue("four") + "," + issue("five"));
  EXPECT_EQ(summarize_operation_outcome(five), "error invalid; error invalid at A; error invalid; and 2 more");
}

TEST(summarize_operation_outcome, is_at_most_300_bytes) {
  const std::string long_path(500, 'x');
  std::string issues;
  for (int i = 0; i < 3; ++i) issues += (i ? "," : "") + issue("d", long_path);
  const auto s = summarize_operation_outcome(outcome(issues));
  EXPECT_LE(s.size(), 300u);
  EXPECT_TRUE(s.ends_with("...")) << s;
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
