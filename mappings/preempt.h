// The PREEMPT fixed-site, fixed-dose paradigm (5 U in 0.1 mL per site, every 12 weeks) and the
// limits the reject and flag rules use. Source: the domain reference's PREEMPT table and label.
#pragma once

#include <string>
#include <vector>

#include "mappings/clinic_record.h"

namespace mappings {

inline constexpr int preempt_sites = 31;
inline constexpr double preempt_units = 155;
inline constexpr int preempt_follow_the_pain_max_sites = 8;
inline constexpr double preempt_follow_the_pain_max_units = 40;
inline constexpr int session_max_sites = 39;        // 31 + 8 follow-the-pain
inline constexpr double session_max_units = 195;    // 155 + 40 follow-the-pain
inline constexpr double window_max_units = 400;     // label maximum in any 3-month window
inline constexpr int window_days = 90;
inline constexpr int minimum_interval_days = 12 * 7;

// The 31 standard sites by muscle and side (corrugator 1+1, procerus 1 midline, frontalis 2+2, ...).
const std::vector<injection>& preempt_standard_layout();

// True when `listed` injects exactly the standard layout (same sites and units per muscle and side).
bool matches_preempt_layout(const std::vector<injection>& listed);

// "155" or "2.5": units as people write them, for messages.
std::string format_units(double units);

}  // namespace mappings
