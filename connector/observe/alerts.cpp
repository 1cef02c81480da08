// Alert conditions and their open/close bookkeeping.
#include "connector/observe/alerts.h"

#include <algorithm>
#include <cmath>

namespace connector {
namespace {

std::string minutes_text(std::int64_t ms) {
  const std::int64_t minutes = ms / 60000;
  return minutes < 1 ? std::to_string(ms / 1000) + " s" : std::to_string(minutes) + " min";
}

}  // namespace

std::vector<open_alert> own_conditions(const alerts_config& config, const alert_inputs& in, std::int64_t now_ms) {
  std::vector<open_alert> now;
  if (in.waiting_for_party > 0) {
    now.push_back({"waits_for_patient",
                   std::to_string(in.waiting_for_party) +
                       (in.waiting_for_party == 1 ? " record waits for its" : " records wait for their") +
                       " patient or practitioner to exist at the EHR (found by the clinic's MRN or the NPI, "
                       "never created: ehr.patient / ehr.practitioner); delivery goes on by itself once the EHR has them",
                   now_ms});
  }
  if (!in.sync_log_failing.empty()) {
    now.push_back({"sync_log_unwritable",
                   "the sync log " + in.sync_log_failing + " cannot be written (read-only or full disk?): delivery goes "
                   "on, its events are lost until the log is writable",
                   now_ms});
  }
  for (const auto& c : in.certificates) {
    if (!c.days_left) {
      now.push_back({"certificate_expiring:" + c.setting, c.setting + " " + c.file + " cannot be read", now_ms});
    } else if (*c.days_left < config.certificate_days) {
      now.push_back({"certificate_expiring:" + c.setting,
                     c.setting + " " + c.file +
                         (*c.days_left < 0 ? " expired " + std::to_string(-*c.days_left) + " days ago"
                                           : " expires in " + std::to_string(*c.days_left) + " days"),
                     now_ms});
    }
  }
  return now;
}

std::vector<open_alert> alert_conditions(const alerts_config& config, const alert_inputs& in, std::int64_t now_ms) {
  std::vector<open_alert> now;
  const auto& s = in.status;
  const auto limit_ms = [](double minutes) { return static_cast<std::int64_t>(std::llround(minutes * 60000)); };
  if (s.ehr_unreachable_since_ms && now_ms - *s.ehr_unreachable_since_ms >= limit_ms(config.ehr_unreachable_minutes)) {
    now.push_back({"ehr_unreachable",
                   "the EHR has not answered for " + minutes_text(now_ms - *s.ehr_unreachable_since_ms) + ": " +
                       s.ehr_detail,
                   *s.ehr_unreachable_since_ms});
  }
  if (s.ehr_reached && (s.ehr_detail == "HTTP 401" || s.ehr_detail == "HTTP 403")) {
    now.push_back({"ehr_refuses_credentials",
                   "the EHR answered " + s.ehr_detail + ": delivery is paused; check the client certificate, "
                   "the token's scopes or the EHR's access rules",
                   s.ehr_last_contact_ms.value_or(now_ms)});
  } else if (s.ehr_reached && s.ehr_detail.rfind("no token: ", 0) == 0) {
    now.push_back({"ehr_refuses_credentials",
                   s.ehr_detail + ": delivery is paused; check ehr.auth and the connector's registration at the EHR",
                   s.ehr_last_contact_ms.value_or(now_ms)});
  }
  if (const auto dead = s.records.find(record_state::dead); dead != s.records.end() && dead->second > 0) {
    now.push_back({"dead_letters",
                   std::to_string(dead->second) + (dead->second == 1 ? " dead letter waits" : " dead letters wait") +
                       " for a replay (see the status page or `migraine-connector status`)",
                   now_ms});
  }
  if (s.oldest_pending_age_ms && *s.oldest_pending_age_ms >= limit_ms(config.oldest_pending_minutes)) {
    now.push_back({"oldest_pending",
                   "the oldest undelivered record has waited " + minutes_text(*s.oldest_pending_age_ms),
                   now_ms - *s.oldest_pending_age_ms});
  }
  if (in.store_problem) {
    now.push_back({"store_unwritable",
                   *in.store_problem + ": the ingest API answers 503 and delivery waits; both resume by "
                   "themselves once the store can be written (free disk space)",
                   now_ms});
  }
  std::vector<open_alert> own = own_conditions(config, in, now_ms);
  if (in.others.empty()) {
    now.insert(now.end(), own.begin(), own.end());
    return now;
  }
  // Several instances: one alert per key, naming each instance where it holds.
  std::vector<instance_conditions> all = in.others;
  all.insert(all.begin(), {in.instance, std::move(own)});
  std::vector<open_alert> merged;
  for (const auto& i : all) {
    for (const auto& c : i.conditions) {
      auto m = std::find_if(merged.begin(), merged.end(), [&](const open_alert& a) { return a.key == c.key; });
      const std::string here = i.instance + ": " + c.detail;
      if (m == merged.end()) {
        merged.push_back({c.key, here, now_ms});
      } else {
        m->detail += "; " + here;
      }
    }
  }
  now.insert(now.end(), merged.begin(), merged.end());
  return now;
}

alert_monitor::alert_monitor(alerts_config config, event_sink& events)
    : config_(std::move(config)), events_(events) {}

std::vector<alert_change> alert_monitor::evaluate(outbox& store, const alert_inputs& in, std::int64_t now_ms) {
  const auto holding = alert_conditions(config_, in, now_ms);
  std::vector<open_alert> open;
  try {
    open = store.open_alerts();
  } catch (const store_error&) {  // the store cannot be read: the alerts as this process last left them
    open = last_open_;
  }
  // What the store could not record yet counts as done either way, and is recorded now if it can.
  for (const auto& entry : unrecorded_) {
    const open_alert& alert = entry.second.first;  // not a structured binding: lambdas capture it
    const bool is_open = entry.second.second;
    open.erase(std::remove_if(open.begin(), open.end(), [&](const open_alert& o) { return o.key == alert.key; }),
               open.end());
    if (is_open) open.push_back(alert);
  }
  record_unrecorded(store);
  auto record = [&](const open_alert& a, bool is_open) {
    try {
      store.set_alert(a, is_open);
    } catch (const store_error&) {
      unrecorded_[a.key] = {a, is_open};  // posted all the same; recorded on a later evaluation
    }
  };
  std::vector<alert_change> changes;
  auto log = [&](const open_alert& a, bool opened) {
    sync_event e;
    e.time_ms = now_ms;
    e.name = opened ? event::alert_opened : event::alert_closed;
    e.detail = a.key + ": " + a.detail;
    events_.emit(e);
    changes.push_back({a, opened, now_ms});
  };
  for (const auto& a : holding) {
    const auto was = std::find_if(open.begin(), open.end(), [&](const open_alert& o) { return o.key == a.key; });
    if (was == open.end()) {
      open_alert opened = a;
      opened.opened_at_ms = now_ms;
      record(opened, true);
      log(opened, true);
    } else if (was->detail != a.detail) {
      record({a.key, a.detail, was->opened_at_ms}, true);  // still the same incident: no new alert
    }
  }
  std::vector<open_alert> left_open;
  for (const auto& o : open) {
    const bool still = std::any_of(holding.begin(), holding.end(), [&](const open_alert& a) { return a.key == o.key; });
    if (!still) {
      record(o, false);
      log({o.key, o.detail, o.opened_at_ms}, false);
    } else {
      left_open.push_back(o);
    }
  }
  for (const auto& c : changes) {
    if (c.opened) left_open.push_back(c.alert);
  }
  last_open_ = std::move(left_open);
  return changes;
}

void alert_monitor::hand_over(outbox& store) {
  last_open_.clear();  // another instance changes them now: what this one knew goes stale
  record_unrecorded(store);
}

void alert_monitor::record_unrecorded(outbox& store) {
  for (auto it = unrecorded_.begin(); it != unrecorded_.end();) {
    try {
      store.set_alert(it->second.first, it->second.second);
      it = unrecorded_.erase(it);
    } catch (const store_error&) {
      ++it;
    }
  }
}

}  // namespace connector
