// Eligibility, response and the flag rules of the domain reference.
#include "mappings/clinical_checks.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <set>

#include "mappings/contract_names.h"
#include "mappings/preempt.h"

namespace mappings {
namespace {

// ICHD-3 chronic migraine: >= 15 headache days/month for > 3 months, >= 8 with migraine features;
// the label adds headaches of >= 4 hours a day (checked only when the clinic recorded it).
constexpr int chronic_headache_days = 15;
constexpr int chronic_migraine_days = 8;
constexpr int chronic_months = 3;
constexpr double chronic_hours_per_day = 4;
// Payers: >= 2 oral preventive classes, each tried >= 60 days (or not tolerated / contraindicated).
constexpr int required_preventive_classes = 2;
constexpr int preventive_trial_days = 60;
// NICE / EHF stopping rule: < 30% reduction after >= 2 cycles.
constexpr double minimum_response_percent = 30;
constexpr int response_assessment_cycles = 2;

const procedure& as_procedure(const clinic_record& r) { return std::get<procedure>(r.body); }

std::string days_text(std::int64_t days) { return std::to_string(days) + " days"; }

void procedure_flags(const clinic_record& record, const patient_history& history,
                     std::vector<clinical_flag>& flags) {
  const procedure& p = as_procedure(record);
  const civil_date visit = record.visit.start.local_date;

  if (visit > p.product.expiration) {
    flags.push_back({"product-expired", flag_severity::high,
                     "lot used on " + visit.iso() + ", after its expiration date " +
                         p.product.expiration.iso(),
                     {{"Medication", "medication"}, {"Procedure", "procedure"}}});
  }

  const double units = p.administered_units();
  const int sites = p.administered_sites();
  if (units > session_max_units || sites > session_max_sites) {
    flags.push_back({"session-dose-above-maximum", flag_severity::high,
                     format_units(units) + " U in " + std::to_string(sites) +
                         " sites; the PREEMPT maximum is 195 U in 39 sites",
                     {{"Procedure", "procedure"}}});
  }

  // The patient's other sessions, on either side of this one: records may arrive out of order,
  // and a session recorded late must still be checked against the ones around it.
  struct session {
    std::int64_t day;
    double units;
    const std::string* record_id;
  };
  std::vector<session> sessions = {{visit.days(), units, &record.record_id}};
  for (const clinic_record* other : history.live(procedure_kind, record.record_id)) {
    sessions.push_back({other->visit.start.local_date.days(),
                        as_procedure(*other).administered_units(), &other->record_id});
  }

  // The nearest other session, before or after.
  const session* nearest = nullptr;
  for (const auto& s : sessions) {
    if (s.record_id == &record.record_id) continue;
    if (nearest == nullptr || std::llabs(s.day - visit.days()) < std::llabs(nearest->day - visit.days())) {
      nearest = &s;
    }
  }
  if (nearest != nullptr) {
    const std::int64_t gap = std::llabs(visit.days() - nearest->day);
    if (gap < minimum_interval_days) {
      flags.push_back({"sessions-too-close", flag_severity::moderate,
                       days_text(gap) + (nearest->day <= visit.days() ? " after" : " before") +
                           " injection session " + *nearest->record_id +
                           "; PREEMPT sessions are 12 weeks (84 days) apart",
                       {{"Procedure", "procedure"}}});
    }
  }

  // The heaviest 90-day window that contains this session: windows starting on a session's day
  // between 89 days before this one and this one.
  double heaviest = 0;
  std::vector<std::string> heaviest_ids;
  for (const auto& start : sessions) {
    if (start.day > visit.days() || visit.days() - start.day >= window_days) continue;
    double total = 0;
    std::vector<std::string> ids;
    for (const auto& s : sessions) {
      if (s.day < start.day || s.day - start.day >= window_days) continue;
      total += s.units;
      if (s.record_id != &record.record_id) ids.push_back(*s.record_id);
    }
    if (total > heaviest) {
      heaviest = total;
      heaviest_ids = std::move(ids);
    }
  }
  if (heaviest > window_max_units) {
    std::sort(heaviest_ids.begin(), heaviest_ids.end());
    std::string ids;
    for (const auto& id : heaviest_ids) ids += (ids.empty() ? "" : ", ") + id;
    flags.push_back({"cumulative-dose-above-maximum", flag_severity::high,
                     format_units(heaviest) + " U within 90 days (this session and " + ids +
                         "); the label maximum is 400 U in 3 months",
                     {{"Procedure", "procedure"}}});
  }

  if (p.protocol == injection_protocol::preempt && p.injections_listed &&
      !matches_preempt_layout(p.injections)) {
    double listed_units = 0;
    int listed_sites = 0;
    for (const auto& inj : p.injections) {
      listed_units += inj.units;
      listed_sites += inj.sites;
    }
    flags.push_back({"preempt-deviation", flag_severity::low,
                     "fixed sites listed: " + format_units(listed_units) + " U in " +
                         std::to_string(listed_sites) +
                         " sites; PREEMPT is 155 U in 31 sites (5 U per site) by muscle and side",
                     {{"Procedure", "procedure"}}});
  }
}

void consultation_flags(const clinic_record& record, const code_tables& tables,
                        std::vector<clinical_flag>& flags) {
  const consultation& c = std::get<consultation>(record.body);
  if (c.decision != consultation_decision::recommend_botox) return;
  const eligibility_assessment e = assess_eligibility(c, tables);
  if (!e.meets_chronic_migraine_criteria) {
    std::string detail = std::to_string(c.headache_days_per_month) + " headache days/month (" +
                         std::to_string(c.migraine_days_per_month) + " with migraine features) for " +
                         std::to_string(c.months_at_frequency) + " months";
    if (c.headache_hours_per_day) {
      detail += ", " + format_units(*c.headache_hours_per_day) + " h/day";
    }
    detail += "; chronic migraine needs >= 15 days (>= 8 migraine) for > 3 months, >= 4 h/day";
    flags.push_back({"criteria-not-met", flag_severity::moderate, std::move(detail),
                     {{"Observation", "observation/eligibility"}}});
  }
  if (e.failed_preventive_classes < required_preventive_classes) {
    flags.push_back({"preventives-not-met", flag_severity::moderate,
                     std::to_string(e.failed_preventive_classes) +
                         " oral preventive class(es) tried and failed; payers require >= 2, each "
                         "for >= 60 days unless not tolerated or contraindicated",
                     {{"Observation", "observation/eligibility"}}});
  }
}

void follow_up_flags(const clinic_record& record, const patient_history& history,
                     std::vector<clinical_flag>& flags) {
  const follow_up& f = std::get<follow_up>(record.body);
  const response_assessment r = assess_response(f, record, history);
  if (r.reduction_percent && r.cycles && *r.cycles >= response_assessment_cycles &&
      *r.reduction_percent < minimum_response_percent) {
    char pct[32];
    std::snprintf(pct, sizeof pct, "%.1f", *r.reduction_percent);
    flags.push_back({"insufficient-response", flag_severity::moderate,
                     std::string(pct) + "% fewer headache days than baseline after " +
                         std::to_string(*r.cycles) +
                         " cycles; NICE and EHF stop treatment below 30% after 2 cycles",
                     {{"Observation", "observation/headache-day-reduction"}}});
  }

  std::vector<implicated_resource> spread;
  std::string effects;
  for (std::size_t i = 0; i < f.side_effects.size(); ++i) {
    const auto kind = f.side_effects[i].effect;
    if (kind == side_effect_kind::dysphagia || kind == side_effect_kind::breathing_difficulty) {
      spread.push_back({"AdverseEvent", "adverse-event/side-effect/" + std::to_string(i)});
      const std::string_view name = name_of(side_effect_names, kind);
      if (effects.find(name) == std::string::npos) {
        effects += (effects.empty() ? "" : " and ") + std::string(name);
      }
    }
  }
  if (!spread.empty()) {
    flags.push_back({"possible-toxin-spread", flag_severity::high,
                     effects + " reported after injection session " + f.procedure_record_id +
                         ": possible distant spread of toxin effect (boxed warning)",
                     std::move(spread)});
  }
}

}  // namespace

std::string_view to_string(flag_severity s) {
  switch (s) {
    case flag_severity::high: return "high";
    case flag_severity::moderate: return "moderate";
    case flag_severity::low: return "low";
  }
  return "low";
}

std::string administration_role(muscle m, side s) {
  std::string role = "administration/";
  role += name_of(muscle_names, m);
  role += '-';
  role += name_of(side_names, s);
  return role;
}

eligibility_assessment assess_eligibility(const consultation& c, const code_tables& tables) {
  eligibility_assessment e;
  e.meets_chronic_migraine_criteria =
      c.headache_days_per_month >= chronic_headache_days &&
      c.migraine_days_per_month >= chronic_migraine_days &&
      c.months_at_frequency > chronic_months &&
      (!c.headache_hours_per_day || *c.headache_hours_per_day >= chronic_hours_per_day);
  std::set<drug_class> failed;
  for (const auto& p : c.prior_preventives) {
    if (!tables.counts_as_preventive_class(p.klass)) continue;
    const bool failed_trial = p.outcome == preventive_outcome::ineffective && p.weeks &&
                              std::int64_t{*p.weeks} * 7 >= preventive_trial_days;  // bounded by the reader too
    const bool could_not_take = p.outcome == preventive_outcome::not_tolerated ||
                                p.outcome == preventive_outcome::contraindicated;
    if (failed_trial || could_not_take) failed.insert(p.klass);
  }
  e.failed_preventive_classes = static_cast<int>(failed.size());
  return e;
}

response_assessment assess_response(const follow_up& f, const clinic_record& record,
                                    const patient_history& history) {
  response_assessment r;
  const clinic_record* reviewed = history.find(f.procedure_record_id);
  if (reviewed != nullptr && reviewed->body.index() == procedure_kind) {
    r.reviewed_procedure = reviewed;
  }

  // Baseline: the consultation the reviewed procedure names, else the latest consultation before
  // it (or before this follow-up), else the follow-up's own baseline field.
  const clinic_record* consult = nullptr;
  if (r.reviewed_procedure != nullptr) {
    if (const auto& id = as_procedure(*r.reviewed_procedure).consultation_record_id) {
      const clinic_record* named = history.find(*id);
      if (named != nullptr && named->body.index() == consultation_kind) consult = named;
    }
  }
  if (consult == nullptr) {
    const date_time& before =
        r.reviewed_procedure != nullptr ? r.reviewed_procedure->visit.start : record.visit.start;
    for (const clinic_record* c : history.live(consultation_kind, record.record_id)) {
      if (is_before(before, c->visit.start)) continue;
      if (consult == nullptr || is_before(consult->visit.start, c->visit.start)) consult = c;
    }
  }
  if (consult != nullptr) {
    r.baseline = baseline_source{std::get<consultation>(consult->body).headache_days_per_month,
                                 consult->record_id};
  } else if (f.baseline_headache_days_per_month) {
    r.baseline = baseline_source{*f.baseline_headache_days_per_month, std::nullopt};
  }
  if (r.baseline && r.baseline->headache_days > 0) {
    const double base = r.baseline->headache_days;
    const double pct = (base - f.headache_days_per_month) / base * 100.0;
    r.reduction_percent = std::round(pct * 10.0) / 10.0;
  }

  if (r.reviewed_procedure != nullptr) {
    if (const auto& cycle = as_procedure(*r.reviewed_procedure).cycle) {
      r.cycles = *cycle;
    } else {
      int count = 1;  // the reviewed procedure itself
      for (const clinic_record* p : history.live(procedure_kind, r.reviewed_procedure->record_id)) {
        if (!is_before(r.reviewed_procedure->visit.start, p->visit.start)) ++count;
      }
      r.cycles = count;
    }
  }
  return r;
}

std::vector<clinical_flag> find_flags(const clinic_record& record, const patient_history& history,
                                      const code_tables& tables) {
  std::vector<clinical_flag> flags;
  switch (record.body.index()) {
    case consultation_kind: consultation_flags(record, tables, flags); break;
    case procedure_kind: procedure_flags(record, history, flags); break;
    case follow_up_kind: follow_up_flags(record, history, flags); break;
  }
  return flags;
}

}  // namespace mappings
