// PREEMPT layout and comparisons.
#include "mappings/preempt.h"

#include <array>
#include <cmath>
#include <cstdio>

namespace mappings {
namespace {

// Units and sites per (muscle, side), so listed injections can be compared whatever their order.
struct totals {
  std::array<std::array<double, 3>, muscle_count> units{};
  std::array<std::array<int, 3>, muscle_count> sites{};
};

totals sum_by_site(const std::vector<injection>& injections) {
  totals t;
  for (const auto& inj : injections) {
    auto m = static_cast<std::size_t>(inj.site_muscle);
    auto s = static_cast<std::size_t>(inj.site_side);
    t.units[m][s] += inj.units;
    t.sites[m][s] += inj.sites;
  }
  return t;
}

}  // namespace

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
  const totals want = sum_by_site(preempt_standard_layout());
  const totals got = sum_by_site(listed);
  for (std::size_t m = 0; m < muscle_count; ++m) {
    for (std::size_t s = 0; s < 3; ++s) {
      if (want.sites[m][s] != got.sites[m][s]) return false;
      if (std::fabs(want.units[m][s] - got.units[m][s]) > 1e-9) return false;
    }
  }
  return true;
}

std::string format_units(double units) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.10g", units);
  return buf;
}

}  // namespace mappings
