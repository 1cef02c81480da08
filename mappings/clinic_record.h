// The clinic record v1 contract as C++ types (see ../shared/spec/clinic-record-v1.md and
// mappings/clinic-record-v1.schema.json). A record of this type has passed every reject rule.
#pragma once

#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "mappings/dates.h"

namespace mappings {

enum class record_status { final, amended, entered_in_error };
enum class sex { female, male, other, unknown };

struct person_name {
  std::string family;
  std::vector<std::string> given;
};

// How a phone number or e-mail address is used (FHIR ContactPoint.use).
enum class contact_use { home, work, mobile };

// OMB race and ethnicity categories, as US Core records them; "unknown" and "declined" say why none
// is given.
enum class race_category { american_indian_or_alaska_native, asian, black_or_african_american,
                           native_hawaiian_or_other_pacific_islander, white, unknown, declined };
enum class ethnicity_category { hispanic_or_latino, not_hispanic_or_latino, unknown, declined };

struct postal_address {
  std::vector<std::string> line;
  std::optional<std::string> city;
  std::optional<std::string> state;  // two-letter USPS code (checked)
  std::optional<std::string> postal_code;
  std::optional<std::string> country;
};

struct patient_info {
  std::string mrn;
  person_name name;
  std::string birth_date;  // YYYY-MM-DD, checked
  sex gender = sex::unknown;
  std::optional<std::string> phone;
  std::optional<contact_use> phone_use;
  std::optional<std::string> email;
  std::optional<contact_use> email_use;
  std::optional<postal_address> address;
  std::vector<race_category> race;
  std::optional<ethnicity_category> ethnicity;
  std::optional<std::string> language;  // BCP-47, e.g. "en", "es-MX"
};

struct clinician_info {
  std::string npi;  // 10 digits with a valid check digit
  person_name name;
  std::optional<std::string> credentials;
};

struct visit_info {
  date_time start;
  std::optional<date_time> end;
  std::optional<std::string> location;
};

// --- consultation -------------------------------------------------------------------------

enum class drug_class {
  beta_blocker, anticonvulsant, antidepressant, calcium_channel_blocker, arb_ace_inhibitor,
  cgrp_monoclonal_antibody, gepant, other
};
enum class preventive_outcome { ineffective, not_tolerated, contraindicated, ongoing };
enum class consultation_decision { recommend_botox, not_eligible, defer };

struct prior_preventive {
  std::string medication;
  drug_class klass = drug_class::other;
  std::optional<int> weeks;  // how long it was tried, when the clinic recorded it
  preventive_outcome outcome = preventive_outcome::ineffective;
};

struct scores {
  std::optional<int> midas;
  std::optional<int> hit6;
};

struct consultation {
  int headache_days_per_month = 0;
  int migraine_days_per_month = 0;
  int months_at_frequency = 0;
  std::optional<double> headache_hours_per_day;
  std::optional<int> average_pain;
  bool aura = false;
  std::optional<int> acute_medication_days_per_month;
  std::vector<std::string> triggers;
  std::vector<prior_preventive> prior_preventives;
  scores score;
  std::string diagnosis_code;
  consultation_decision decision = consultation_decision::defer;
};

// --- procedure ----------------------------------------------------------------------------

enum class muscle {
  corrugator, procerus, frontalis, temporalis, occipitalis, cervical_paraspinal, trapezius
};
inline constexpr int muscle_count = 7;
enum class side { left, right, midline };
enum class injection_protocol { preempt, custom };
enum class reaction_severity { mild, moderate, severe };

struct injection {
  muscle site_muscle = muscle::corrugator;
  side site_side = side::left;
  int sites = 0;
  double units = 0;
};

// Units and sites injected into one muscle on one side (fixed sites and follow-the-pain together).
struct site_dose {
  muscle site_muscle = muscle::corrugator;
  side site_side = side::left;
  int sites = 0;
  double units = 0;
  int follow_the_pain_sites = 0;
};

// Sums injections by muscle and side, in the contract's muscle order then left, right, midline,
// whatever order the clinic listed them in. Units are rounded to 1e-6 so that 0.1 + 0.2 is 0.3.
std::vector<site_dose> sum_by_site(const std::vector<injection>& fixed_sites,
                                   const std::vector<injection>& follow_the_pain);

struct product_info {
  std::string ndc;    // as written by the clinic
  std::string ndc11;  // normalised 11-digit form, the key of the NDC code table
  std::string lot;
  civil_date expiration;
  int vial_units = 0;
  int vials = 1;
  std::optional<double> diluent_ml;
};

struct immediate_reaction {
  std::string reaction;
  reaction_severity level = reaction_severity::mild;
};

struct procedure {
  std::optional<std::string> consultation_record_id;
  std::optional<int> cycle;
  product_info product;
  injection_protocol protocol = injection_protocol::preempt;
  // For PREEMPT without a list, the reader fills in the standard 31-site layout and clears
  // injections_listed, so every later stage sees the sites actually injected.
  std::vector<injection> injections;
  bool injections_listed = true;
  std::vector<injection> follow_the_pain;
  double units_discarded = 0;
  std::vector<immediate_reaction> immediate_reactions;
  std::optional<civil_date> next_due;

  std::vector<site_dose> doses_by_site() const { return sum_by_site(injections, follow_the_pain); }
  double administered_units() const;
  int administered_sites() const;
};

// --- follow-up ----------------------------------------------------------------------------

enum class side_effect_kind {
  neck_pain, eyelid_ptosis, eyebrow_ptosis, injection_site_pain, headache, muscle_weakness,
  facial_paresis, musculoskeletal_stiffness, dysphagia, breathing_difficulty, other
};
enum class follow_up_plan { continue_treatment, stop, adjust };

struct side_effect {
  side_effect_kind effect = side_effect_kind::other;
  reaction_severity level = reaction_severity::mild;
  std::optional<civil_date> onset;
  std::optional<bool> resolved;
  std::optional<std::string> description;
};

struct follow_up {
  std::string procedure_record_id;
  int headache_days_per_month = 0;
  int migraine_days_per_month = 0;
  std::optional<int> average_pain;
  scores score;
  std::vector<side_effect> side_effects;
  follow_up_plan plan = follow_up_plan::continue_treatment;
  std::optional<int> baseline_headache_days_per_month;
};

// --- the envelope -------------------------------------------------------------------------

struct clinic_record {
  std::string record_id;
  int revision = 1;
  record_status status = record_status::final;
  date_time recorded_at;
  patient_info patient;
  clinician_info clinician;
  visit_info visit;
  std::optional<std::string> notes;
  std::variant<consultation, procedure, follow_up> body;

  // "consultation", "procedure" or "follow_up": the record_type as written.
  const char* type_name() const;
};

}  // namespace mappings
