// Alerts for IT staff: each opens once when its condition starts and closes once when it ends,
// however many records fail meanwhile. Open alerts are kept in the outbox, so a restart neither
// repeats nor forgets one. Every change goes to the sync log, and to the webhook when configured.
//
//   ehr_unreachable             the EHR has not answered for alerts.ehr_unreachable_minutes
//   ehr_refuses_credentials     the EHR answered 401/403: delivery is paused until someone acts
//   dead_letters                at least one record waits in the dead letters for a replay
//   oldest_pending              a record has waited longer than alerts.oldest_pending_minutes
//   certificate_expiring:SETTING  a configured certificate expires within alerts.certificate_days
//   sync_log_unwritable         the sync log cannot be written (read-only, full disk): delivery goes on
//   store_unwritable            the store cannot take writes (its disk is full, permissions): intake
//                               answers 503, delivery waits; both go on by themselves when it can
//   waits_for_patient           records wait for their patient (or practitioner) to exist at the EHR
//                               (ehr.patient / ehr.practitioner match); they go on once it does
//
// Several instances on one store (PostgreSQL): one of them, the leader (outbox::lead "alerts"),
// evaluates and posts, so an incident gives one alert however many instances see it. The
// conditions only an instance can see (its sync log, its certificate files, the records its
// engine holds for their patient) it publishes for the leader, which merges them by key: one
// alert naming each instance where it holds.
//
// An alert is posted even when the store cannot record it (the store_unwritable alert itself,
// on a full disk): the monitor keeps such changes in memory and records them once it can.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "connector/config/config.h"
#include "connector/observe/metrics.h"
#include "connector/observe/sync_event.h"
#include "connector/outbox/outbox.h"

namespace connector {

// The conditions one other instance sees alone, as it published them.
struct instance_conditions {
  std::string instance;  // "daemon pid 41 on host-b"
  std::vector<open_alert> conditions;
};

struct alert_inputs {
  outbox_status status;
  std::optional<std::string> store_problem;  // outbox::write_problem()
  // What only this process sees:
  std::vector<certificate_days> certificates;
  std::string sync_log_failing;  // the log's path while its writes fail; empty when it writes
  int waiting_for_party = 0;  // records held because the EHR has not their patient or practitioner yet
  std::string instance;       // how the others name this process; empty with a single instance
  // What the other live instances see alone (empty with a single instance).
  std::vector<instance_conditions> others;
};

struct alert_change {
  open_alert alert;
  bool opened = true;  // false: closed
  std::int64_t at_ms = 0;
};

// The alerts whose conditions hold now, keyed, with a detail for people. Pure.
std::vector<open_alert> alert_conditions(const alerts_config& config, const alert_inputs& in, std::int64_t now_ms);
// Those of them only this process sees (from certificates, sync_log_failing, waiting_for_party):
// what it publishes for the leader. Pure.
std::vector<open_alert> own_conditions(const alerts_config& config, const alert_inputs& in, std::int64_t now_ms);

class alert_monitor {
 public:
  alert_monitor(alerts_config config, event_sink& events);

  // Compares the conditions with the open alerts in `store`; opens and closes, logs and stores
  // each change, and returns the changes (for the webhook).
  std::vector<alert_change> evaluate(outbox& store, const alert_inputs& in, std::int64_t now_ms);
  // Another instance leads now: what this one could not record yet is recorded (so the leader
  // sees, and closes, what this one opened), and nothing more is posted from here.
  void hand_over(outbox& store);

 private:
  alerts_config config_;
  event_sink& events_;
  // Records what the store refused before, each change it now takes leaving unrecorded_.
  void record_unrecorded(outbox& store);

  // Changes the store refused to record, newest state per key (true: open), applied over what
  // the store says until they are recorded.
  std::map<std::string, std::pair<open_alert, bool>> unrecorded_;
  // The open alerts as this process last left them: used while the store cannot be read.
  std::vector<open_alert> last_open_;
};

}  // namespace connector
