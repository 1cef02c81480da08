// Derived quantities of clinic records.
#include "mappings/clinic_record.h"


#include <array>
#include <cmath>

namespace mappings {
namespace {
double round_units(double units) { return std::round(units * 1e6) / 1e6; }
}  // namespace

std::vector<site_dose> sum_by_site(const std::vector<injection>& fixed_sites,
                                   const std::vector<injection>& follow_the_pain) {
  std::array<std::array<site_dose, 3>, muscle_count> grid{};
  std::array<std::array<bool, 3>, muscle_count> used{};
  auto add = [&](const injection& inj, bool ftp) {
    const auto m = static_cast<std::size_t>(inj.site_muscle);
    const auto s = static_cast<std::size_t>(inj.site_side);
    site_dose& d = grid[m][s];
    d.site_muscle = inj.site_muscle;
    d.site_side = inj.site_side;
    d.sites += inj.sites;
    d.units += inj.units;
    if (ftp) d.follow_the_pain_sites += inj.sites;
    used[m][s] = true;
  };
  for (const auto& inj : fixed_sites) add(inj, false);
  for (const auto& inj : follow_the_pain) add(inj, true);
  std::vector<site_dose> doses;
  for (std::size_t m = 0; m < muscle_count; ++m) {
    for (std::size_t s = 0; s < 3; ++s) {
      if (!used[m][s]) continue;
      grid[m][s].units = round_units(grid[m][s].units);
      doses.push_back(grid[m][s]);
    }
  }
  return doses;
}

double procedure::administered_units() const {
  double total = 0;
  for (const auto& inj : injections) total += inj.units;
  for (const auto& inj : follow_the_pain) total += inj.units;
  return round_units(total);
}

int procedure::administered_sites() const {
  int total = 0;
  for (const auto& inj : injections) total += inj.sites;
  for (const auto& inj : follow_the_pain) total += inj.sites;
  return total;
}

const char* clinic_record::type_name() const {
  switch (body.index()) {
    case 0: return "consultation";
    case 1: return "procedure";
    default: return "follow_up";
  }
}

}  // namespace mappings
