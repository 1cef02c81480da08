// Derived quantities of clinic records.
#include "mappings/clinic_record.h"

namespace mappings {

double procedure::administered_units() const {
  double total = 0;
  for (const auto& inj : injections) total += inj.units;
  for (const auto& inj : follow_the_pain) total += inj.units;
  return total;
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
