// Queries over a patient's earlier records.
#include "mappings/patient_history.h"

#include <algorithm>

namespace mappings {

const clinic_record* patient_history::latest_revision(std::string_view record_id) const {
  const clinic_record* best = nullptr;
  for (const auto& r : records_) {
    if (r.record_id == record_id && (best == nullptr || r.revision > best->revision)) best = &r;
  }
  return best;
}

const clinic_record* patient_history::find(std::string_view record_id) const {
  const clinic_record* best = latest_revision(record_id);
  if (best != nullptr && best->status == record_status::entered_in_error) return nullptr;
  return best;
}

std::vector<const clinic_record*> patient_history::revisions(std::string_view record_id) const {
  std::vector<const clinic_record*> out;
  for (const auto& r : records_) {
    if (r.record_id != record_id) continue;
    const bool seen = std::any_of(out.begin(), out.end(), [&](const clinic_record* o) { return o->revision == r.revision; });
    if (!seen) out.push_back(&r);
  }
  std::sort(out.begin(), out.end(), [](const clinic_record* a, const clinic_record* b) { return a->revision > b->revision; });
  return out;
}

std::vector<const clinic_record*> patient_history::live(std::size_t kind_index,
                                                        std::string_view excluded_id) const {
  std::vector<const clinic_record*> out;
  for (const auto& r : records_) {
    if (r.body.index() != kind_index || r.record_id == excluded_id) continue;
    if (find(r.record_id) == &r) out.push_back(&r);  // latest live revision only
  }
  return out;
}

}  // namespace mappings
