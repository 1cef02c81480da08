// What the mapper may know of a patient's earlier records: served by the outbox in the daemon,
// or read from --history files by the offline CLI. Records may arrive in any order.
#pragma once

#include <string_view>
#include <vector>

#include "mappings/clinic_record.h"

namespace mappings {

class patient_history {
 public:
  patient_history() = default;
  explicit patient_history(std::vector<clinic_record> records) : records_(std::move(records)) {}

  void add(clinic_record record) { records_.push_back(std::move(record)); }

  // The highest revision of record_id, or nullptr. Retracted records count as absent.
  const clinic_record* find(std::string_view record_id) const;
  // The highest revision of record_id whatever its status (a retraction included), or nullptr.
  const clinic_record* latest_revision(std::string_view record_id) const;

  // Every revision of record_id in the history, newest first (duplicates of one revision once).
  std::vector<const clinic_record*> revisions(std::string_view record_id) const;

  // The latest revision of every live (not entered-in-error) record of this kind, except
  // `excluded_id` (the record being mapped), in no particular order.
  std::vector<const clinic_record*> live(std::size_t kind_index, std::string_view excluded_id) const;

 private:
  std::vector<clinic_record> records_;
};

// Variant indexes of clinic_record::body, for patient_history::live.
inline constexpr std::size_t consultation_kind = 0;
inline constexpr std::size_t procedure_kind = 1;
inline constexpr std::size_t follow_up_kind = 2;

}  // namespace mappings
