// The outbox's state as JSON members, written the same way by `status --json` and the admin API's
// /api/status: records by state, quarantined, possibly at the EHR, the oldest pending age, the last
// error and the processes delivering.
#pragma once

#include "connector/outbox/outbox.h"
#include "fhir/json_writer.h"

namespace connector {

// Writes the members into the object `out` is in.
// `self`: the owner id of the process answering (marked "this" among the processes), 0 for none.
void write_queue_members(fhir::json_writer& out, const outbox_status& s, std::int64_t self = 0);

}  // namespace connector
