// The contract's spelling of every enumerated value, in one place: the reader parses with these
// tables, and the mapper builds code-table keys ("muscle/temporalis") from them.
#pragma once

#include <array>
#include <optional>
#include <string_view>
#include <utility>

#include "mappings/clinic_record.h"

namespace mappings {

template <typename E, std::size_t N>
using name_table = std::array<std::pair<E, std::string_view>, N>;

inline constexpr name_table<record_status, 3> record_status_names{{
    {record_status::final, "final"},
    {record_status::amended, "amended"},
    {record_status::entered_in_error, "entered-in-error"}}};

inline constexpr name_table<sex, 4> sex_names{{
    {sex::female, "female"}, {sex::male, "male"}, {sex::other, "other"}, {sex::unknown, "unknown"}}};

inline constexpr name_table<contact_use, 3> contact_use_names{{
    {contact_use::home, "home"}, {contact_use::work, "work"}, {contact_use::mobile, "mobile"}}};

inline constexpr name_table<race_category, 7> race_names{{
    {race_category::american_indian_or_alaska_native, "american-indian-or-alaska-native"},
    {race_category::asian, "asian"},
    {race_category::black_or_african_american, "black-or-african-american"},
    {race_category::native_hawaiian_or_other_pacific_islander, "native-hawaiian-or-other-pacific-islander"},
    {race_category::white, "white"},
    {race_category::unknown, "unknown"},
    {race_category::declined, "declined"}}};

inline constexpr name_table<ethnicity_category, 4> ethnicity_names{{
    {ethnicity_category::hispanic_or_latino, "hispanic-or-latino"},
    {ethnicity_category::not_hispanic_or_latino, "not-hispanic-or-latino"},
    {ethnicity_category::unknown, "unknown"},
    {ethnicity_category::declined, "declined"}}};

inline constexpr name_table<drug_class, 8> drug_class_names{{
    {drug_class::beta_blocker, "beta-blocker"},
    {drug_class::anticonvulsant, "anticonvulsant"},
    {drug_class::antidepressant, "antidepressant"},
    {drug_class::calcium_channel_blocker, "calcium-channel-blocker"},
    {drug_class::arb_ace_inhibitor, "arb-ace-inhibitor"},
    {drug_class::cgrp_monoclonal_antibody, "cgrp-monoclonal-antibody"},
    {drug_class::gepant, "gepant"},
    {drug_class::other, "other"}}};

inline constexpr name_table<preventive_outcome, 4> preventive_outcome_names{{
    {preventive_outcome::ineffective, "ineffective"},
    {preventive_outcome::not_tolerated, "not-tolerated"},
    {preventive_outcome::contraindicated, "contraindicated"},
    {preventive_outcome::ongoing, "ongoing"}}};

inline constexpr name_table<consultation_decision, 3> decision_names{{
    {consultation_decision::recommend_botox, "recommend-botox"},
    {consultation_decision::not_eligible, "not-eligible"},
    {consultation_decision::defer, "defer"}}};

inline constexpr name_table<muscle, 7> muscle_names{{
    {muscle::corrugator, "corrugator"},
    {muscle::procerus, "procerus"},
    {muscle::frontalis, "frontalis"},
    {muscle::temporalis, "temporalis"},
    {muscle::occipitalis, "occipitalis"},
    {muscle::cervical_paraspinal, "cervical_paraspinal"},
    {muscle::trapezius, "trapezius"}}};

inline constexpr name_table<side, 3> side_names{{
    {side::left, "left"}, {side::right, "right"}, {side::midline, "midline"}}};

inline constexpr name_table<injection_protocol, 2> protocol_names{{
    {injection_protocol::preempt, "PREEMPT"}, {injection_protocol::custom, "custom"}}};

inline constexpr name_table<reaction_severity, 3> severity_names{{
    {reaction_severity::mild, "mild"},
    {reaction_severity::moderate, "moderate"},
    {reaction_severity::severe, "severe"}}};

inline constexpr name_table<side_effect_kind, 11> side_effect_names{{
    {side_effect_kind::neck_pain, "neck-pain"},
    {side_effect_kind::eyelid_ptosis, "eyelid-ptosis"},
    {side_effect_kind::eyebrow_ptosis, "eyebrow-ptosis"},
    {side_effect_kind::injection_site_pain, "injection-site-pain"},
    {side_effect_kind::headache, "headache"},
    {side_effect_kind::muscle_weakness, "muscle-weakness"},
    {side_effect_kind::facial_paresis, "facial-paresis"},
    {side_effect_kind::musculoskeletal_stiffness, "musculoskeletal-stiffness"},
    {side_effect_kind::dysphagia, "dysphagia"},
    {side_effect_kind::breathing_difficulty, "breathing-difficulty"},
    {side_effect_kind::other, "other"}}};

inline constexpr name_table<follow_up_plan, 3> plan_names{{
    {follow_up_plan::continue_treatment, "continue"},
    {follow_up_plan::stop, "stop"},
    {follow_up_plan::adjust, "adjust"}}};

template <typename E, std::size_t N>
constexpr std::optional<E> parse_name(const name_table<E, N>& table, std::string_view text) {
  for (const auto& [value, name] : table) {
    if (name == text) return value;
  }
  return std::nullopt;
}

template <typename E, std::size_t N>
constexpr std::string_view name_of(const name_table<E, N>& table, E value) {
  for (const auto& [v, name] : table) {
    if (v == value) return name;
  }
  return "?";
}

}  // namespace mappings
