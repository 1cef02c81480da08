// PREEMPT layout and comparisons.
#include "mappings/preempt.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

namespace mappings {

const std::vector<injection>& preempt_standard_layout() {
  static const std::vector<injection> layout = {
      {muscle::corrugator, side::left, 1, 5},
      {muscle::corrugator, side::right, 1, 5},
      {muscle::procerus, side::midline, 1, 5},
      {muscle::frontalis, side::left, 2, 10},
      {muscle::frontalis, side::right, 2, 10},
      {muscle::temporalis, side::left, 4, 20},
      {muscle::temporalis, side::right, 4, 20},
      {muscle::occipitalis, side::left, 3, 15},
      {muscle::occipitalis, side::right, 3, 15},
      {muscle::cervical_paraspinal, side::left, 2, 10},
      {muscle::cervical_paraspinal, side::right, 2, 10},
      {muscle::trapezius, side::left, 3, 15},
      {muscle::trapezius, side::right, 3, 15},
  };
  return layout;
}

bool matches_preempt_layout(const std::vector<injection>& listed) {
  const std::vector<site_dose> want = sum_by_site(preempt_standard_layout(), {});
  const std::vector<site_dose> got = sum_by_site(listed, {});
  return std::equal(want.begin(), want.end(), got.begin(), got.end(),
                    [](const site_dose& a, const site_dose& b) {
                      return a.site_muscle == b.site_muscle && a.site_side == b.site_side &&
                             a.sites == b.sites && a.units == b.units;
                    });
}

std::string format_units(double units) {
  char buf[32];
  // As printf's %.10g would write it, without printf's cost (this is on every administration).
  const auto end = std::to_chars(buf, buf + sizeof buf, units, std::chars_format::general, 10).ptr;
  return std::string(buf, end);
}

}  // namespace mappings
