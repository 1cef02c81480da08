// The flag rules of the domain reference, each at its boundary, and the assessments behind them.
#include "mappings/clinical_checks.h"

#include <gtest/gtest.h>

#include "mappings/dates.h"
#include "support/test_support.h"

namespace {

using namespace mappings;
using test_support::example;

std::vector<std::string> rules(const clinic_record& r, const patient_history& h = {}) {
  std::vector<std::string> out;
  for (const auto& f : find_flags(r, h, test_support::shipped_tables())) {
    out.push_back(std::string(f.rule) + ":" + std::string(to_string(f.level)));
  }
  return out;
}

procedure& proc(clinic_record& r) { return std::get<procedure>(r.body); }
consultation& cons(clinic_record& r) { return std::get<consultation>(r.body); }
follow_up& fu(clinic_record& r) { return std::get<follow_up>(r.body); }

// The example procedure moved to another day, with another id.
clinic_record procedure_on(const std::string& id, const std::string& day, double extra_units = 0) {
  clinic_record r = example("procedure");
  r.record_id = id;
  r.visit.start = *parse_date_time(day + "T10:30:00-05:00");
  r.visit.end.reset();
  if (extra_units > 0) proc(r).follow_the_pain.push_back({muscle::trapezius, side::left, 1, extra_units});
  return r;
}

TEST(flags, the_examples_raise_none) {
  EXPECT_TRUE(rules(example("consultation")).empty());
  EXPECT_TRUE(rules(example("procedure")).empty());
  EXPECT_TRUE(rules(example("follow_up")).empty());
}

TEST(flags, product_used_after_expiry_is_high) {
  clinic_record r = example("procedure");
  proc(r).product.expiration = *parse_date("2026-08-17");  // the visit day itself: still usable
  EXPECT_TRUE(rules(r).empty());
  proc(r).product.expiration = *parse_date("2026-08-16");
  EXPECT_EQ(rules(r), std::vector<std::string>{"product-expired:high"});
}

TEST(flags, more_than_195_units_or_39_sites_is_high) {
  clinic_record r = example("procedure");  // 165 U in 33 sites
  proc(r).follow_the_pain.push_back({muscle::occipitalis, side::right, 6, 30});  // 195 U, 39 sites
  EXPECT_TRUE(rules(r).empty());
  proc(r).follow_the_pain.back().units = 30.5;
  EXPECT_EQ(rules(r), std::vector<std::string>{"session-dose-above-maximum:high"});
  proc(r).follow_the_pain.back() = {muscle::occipitalis, side::right, 7, 25};  // 190 U, 40 sites
  EXPECT_EQ(rules(r), std::vector<std::string>{"session-dose-above-maximum:high"});
}

TEST(flags, sessions_less_than_12_weeks_apart_are_moderate) {
  const clinic_record current = procedure_on("P-2", "2026-11-09");
  patient_history at_84_days({procedure_on("P-1", "2026-08-17")});
  EXPECT_TRUE(rules(current, at_84_days).empty());
  patient_history at_83_days({procedure_on("P-1", "2026-08-18")});
  EXPECT_EQ(rules(current, at_83_days), std::vector<std::string>{"sessions-too-close:moderate"});
  // Records arrive out of order: a session recorded late is checked against the ones after it too.
  patient_history later({procedure_on("P-3", "2026-11-20")});
  EXPECT_EQ(rules(current, later), std::vector<std::string>{"sessions-too-close:moderate"});
  const auto flags = find_flags(current, later, test_support::shipped_tables());
  EXPECT_EQ(flags[0].detail, "11 days before injection session P-3; PREEMPT sessions are 12 weeks (84 days) apart");
  patient_history much_later({procedure_on("P-3", "2027-02-01")});
  EXPECT_TRUE(rules(current, much_later).empty());
}

TEST(flags, more_than_400_units_within_90_days_is_high) {
  // 165 U now + 236 U 89 days earlier = 401 U within 90 days (89 days apart is not too close).
  const clinic_record current = procedure_on("P-2", "2026-11-09");
  patient_history within({procedure_on("P-1", "2026-08-12", 71)});
  EXPECT_EQ(rules(current, within), std::vector<std::string>{"cumulative-dose-above-maximum:high"});
  // 90 days before is outside the window.
  patient_history outside({procedure_on("P-1", "2026-08-11", 71)});
  EXPECT_TRUE(rules(current, outside).empty());
  // 400 U exactly is the maximum, not above it.
  patient_history at_limit({procedure_on("P-1", "2026-08-12", 70)});
  EXPECT_TRUE(rules(current, at_limit).empty());
  // The heavier session recorded after this one (out of order) counts as well.
  const clinic_record earlier = procedure_on("P-0", "2026-08-12");
  patient_history later_heavy({procedure_on("P-2", "2026-11-09", 71)});
  EXPECT_EQ(rules(earlier, later_heavy), std::vector<std::string>{"cumulative-dose-above-maximum:high"});
}

TEST(flags, retracted_or_same_record_history_does_not_count) {
  const clinic_record current = procedure_on("P-2", "2026-11-09");
  clinic_record retracted = procedure_on("P-1", "2026-10-01");
  retracted.status = record_status::entered_in_error;
  clinic_record older_revision = procedure_on("P-2", "2026-10-01");
  EXPECT_TRUE(rules(current, patient_history({retracted, older_revision})).empty());
}

TEST(flags, a_preempt_session_off_the_layout_is_low) {
  clinic_record r = example("procedure");
  proc(r).injections_listed = true;  // the standard layout, listed explicitly
  EXPECT_TRUE(rules(r).empty());
  proc(r).injections[0].units = 10;  // corrugator left 10 U instead of 5
  EXPECT_EQ(rules(r), std::vector<std::string>{"preempt-deviation:low"});
  proc(r).protocol = injection_protocol::custom;  // custom protocols have no layout to deviate from
  EXPECT_TRUE(rules(r).empty());
}

TEST(flags, recommendation_without_chronic_migraine_criteria_is_moderate) {
  const auto check = [](auto edit) {
    clinic_record r = example("consultation");
    edit(cons(r));
    return rules(r);
  };
  const std::vector<std::string> flagged = {"criteria-not-met:moderate"};
  EXPECT_EQ(check([](consultation& c) { c.headache_days_per_month = 14; }), flagged);
  EXPECT_TRUE(check([](consultation& c) { c.headache_days_per_month = 15; }).empty());
  EXPECT_EQ(check([](consultation& c) { c.migraine_days_per_month = 7; }), flagged);
  EXPECT_EQ(check([](consultation& c) { c.months_at_frequency = 3; }), flagged);
  EXPECT_EQ(check([](consultation& c) { c.headache_hours_per_day = 3.5; }), flagged);
  EXPECT_TRUE(check([](consultation& c) { c.headache_hours_per_day.reset(); }).empty());
  // Only a recommendation is checked: declining treatment needs no criteria.
  EXPECT_TRUE(check([](consultation& c) {
                c.headache_days_per_month = 10;
                c.decision = consultation_decision::not_eligible;
              }).empty());
}

TEST(flags, recommendation_with_fewer_than_two_failed_classes_is_moderate) {
  const auto check = [](std::vector<prior_preventive> tried) {
    clinic_record r = example("consultation");
    cons(r).prior_preventives = std::move(tried);
    return rules(r);
  };
  const std::vector<std::string> flagged = {"preventives-not-met:moderate"};
  const prior_preventive beta{"propranolol", drug_class::beta_blocker, 9, preventive_outcome::ineffective};
  EXPECT_EQ(check({beta}), flagged);
  // 9 weeks (63 days) is a full trial, 8 weeks (56 days) is not.
  EXPECT_TRUE(check({beta, {"topiramate", drug_class::anticonvulsant, 9, preventive_outcome::ineffective}}).empty());
  EXPECT_EQ(check({beta, {"topiramate", drug_class::anticonvulsant, 8, preventive_outcome::ineffective}}), flagged);
  // Not tolerated or contraindicated counts whatever the duration; ongoing does not.
  EXPECT_TRUE(check({beta, {"topiramate", drug_class::anticonvulsant, 1, preventive_outcome::not_tolerated}}).empty());
  EXPECT_TRUE(check({beta, {"valproate", drug_class::anticonvulsant, std::nullopt, preventive_outcome::contraindicated}}).empty());
  EXPECT_EQ(check({beta, {"topiramate", drug_class::anticonvulsant, 20, preventive_outcome::ongoing}}), flagged);
  // Two drugs of one class are one class; CGRP antibodies are not oral preventives.
  EXPECT_EQ(check({beta, {"metoprolol", drug_class::beta_blocker, 12, preventive_outcome::ineffective}}), flagged);
  EXPECT_EQ(check({beta, {"erenumab", drug_class::cgrp_monoclonal_antibody, 12, preventive_outcome::ineffective}}), flagged);
}

// A follow-up reviewing procedure P-2 (cycle 2) with the example consultation as baseline (22 days).
struct follow_up_case {
  clinic_record record = example("follow_up");
  patient_history history;
  follow_up_case(int headache_days, std::optional<int> cycle) {
    fu(record).procedure_record_id = "P-2";
    fu(record).headache_days_per_month = headache_days;
    fu(record).migraine_days_per_month = 0;
    clinic_record p1 = procedure_on("PROC-2026-0001", "2026-08-17");
    clinic_record p2 = procedure_on("P-2", "2026-11-09");
    proc(p1).cycle.reset();
    proc(p2).cycle = cycle;
    history = patient_history({example("consultation"), p1, p2});
  }
};

TEST(flags, less_than_30_percent_after_two_cycles_is_moderate) {
  follow_up_case below(16, 2);  // (22 - 16) / 22 = 27.3%
  EXPECT_EQ(rules(below.record, below.history), std::vector<std::string>{"insufficient-response:moderate"});
  follow_up_case first_cycle(16, 1);
  EXPECT_TRUE(rules(first_cycle.record, first_cycle.history).empty());
  follow_up_case counted(16, std::nullopt);  // no cycle field: counted from the history, 2
  EXPECT_EQ(rules(counted.record, counted.history), std::vector<std::string>{"insufficient-response:moderate"});
  follow_up_case enough(15, 2);  // 31.8%
  EXPECT_TRUE(rules(enough.record, enough.history).empty());
}

TEST(assess_response, takes_the_baseline_from_the_consultation_then_the_field) {
  follow_up_case c(11, 2);
  auto r = assess_response(fu(c.record), c.record, c.history);
  ASSERT_TRUE(r.baseline);
  EXPECT_EQ(r.baseline->headache_days, 22);
  EXPECT_EQ(r.baseline->consultation_record_id, "CONS-2026-0001");
  EXPECT_DOUBLE_EQ(*r.reduction_percent, 50.0);
  EXPECT_EQ(r.cycles, 2);

  clinic_record alone = example("follow_up");
  fu(alone).baseline_headache_days_per_month = 30;
  r = assess_response(fu(alone), alone, {});
  EXPECT_EQ(r.reviewed_procedure, nullptr);
  EXPECT_EQ(r.baseline->headache_days, 30);
  EXPECT_FALSE(r.baseline->consultation_record_id);
  EXPECT_DOUBLE_EQ(*r.reduction_percent, 66.7);
  EXPECT_FALSE(r.cycles);
}

TEST(flags, dysphagia_or_breathing_difficulty_is_high_and_implicates_the_events) {
  clinic_record r = example("follow_up");
  fu(r).side_effects.push_back({side_effect_kind::dysphagia, reaction_severity::moderate, {}, {}, {}});
  fu(r).side_effects.push_back({side_effect_kind::breathing_difficulty, reaction_severity::severe, {}, {}, {}});
  const auto flags = find_flags(r, {}, test_support::shipped_tables());
  ASSERT_EQ(flags.size(), 1u);
  EXPECT_EQ(flags[0].rule, "possible-toxin-spread");
  EXPECT_EQ(flags[0].level, flag_severity::high);
  ASSERT_EQ(flags[0].implicated.size(), 2u);
  EXPECT_EQ(flags[0].implicated[0].role, "adverse-event/side-effect/1");
  EXPECT_EQ(flags[0].implicated[1].role, "adverse-event/side-effect/2");
}

TEST(flags, details_carry_no_patient_data) {
  clinic_record r = example("procedure");
  proc(r).product.expiration = *parse_date("2026-01-01");
  proc(r).follow_the_pain.push_back({muscle::occipitalis, side::right, 8, 40});
  for (const auto& f : find_flags(r, {}, test_support::shipped_tables())) {
    for (auto secret : {"Jordan", "Example", "MRN-100234", "1984"}) {
      EXPECT_EQ(f.detail.find(secret), std::string::npos) << f.detail;
    }
  }
}

}  // namespace
