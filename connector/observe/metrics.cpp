// Counting events and writing the exposition text.
#include "connector/observe/metrics.h"

#include <cstdio>

namespace connector {
namespace {

constexpr std::int64_t rate_window_ms = 5 * 60 * 1000;

// Why a retry was scheduled, as a label with few values.
std::string retry_reason(const sync_event& e) {
  if (e.name == event::tls_fault) return "tls";
  if (e.http_status == 429) return "http_429";
  if (e.http_status == 408) return "http_408";
  if (e.http_status >= 500) return "http_5xx";
  if (e.detail.find("timed out") != std::string::npos) return "timeout";
  return "connection";
}

void family(std::string& out, const char* name, const char* type, const char* help) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

void sample(std::string& out, const std::string& name_and_labels, double value) {
  char number[48];
  std::snprintf(number, sizeof number, "%.17g", value);
  out += name_and_labels;
  out += ' ';
  out += number;
  out += '\n';
}

// Label values are setting names and fixed words, but escape them as the format requires anyway.
std::string label(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    if (c == '\\' || c == '"') out += '\\';
    out += c;
  }
  return out;
}

}  // namespace

void metrics::emit(const sync_event& e) {
  series_.emit(e);
  std::lock_guard lock(mutex_);
  if (e.name == event::received) {
    ++received_by_channel_[e.channel];
  } else if (e.name == event::rejected) {
    ++rejected_by_channel_[e.channel];
  } else if (e.name == event::delivered) {
    ++delivered_;
    recent_deliveries_ms_.push_back(e.time_ms);
    while (!recent_deliveries_ms_.empty() && recent_deliveries_ms_.front() < e.time_ms - rate_window_ms) {
      recent_deliveries_ms_.pop_front();
    }
    if (e.latency_ms) {
      const double seconds = static_cast<double>(*e.latency_ms) / 1000.0;
      for (std::size_t i = 0; i < latency_buckets.size(); ++i) {
        if (seconds <= latency_buckets[i]) ++latency_counts_[i];
      }
      ++latency_count_;
      latency_sum_s_ += seconds;
    }
  } else if (e.name == event::retry_scheduled) {
    ++retries_by_reason_[retry_reason(e)];
  } else if (e.name == event::tls_fault) {
    ++tls_faults_;
    if (!e.record_id.empty()) ++retries_by_reason_[retry_reason(e)];  // a record's retry, not an idle probe
  } else if (e.name == event::dead_lettered) {
    ++dead_lettered_;
  } else if (e.name == event::replayed) {
    ++replayed_;
  } else if (e.name == event::write_refused) {
    ++write_refusals_;
  } else if (e.name == event::auth_fault) {
    ++auth_faults_;
  } else if (e.name == event::held) {
    ++held_;
  } else if (e.name == event::flagged) {
    ++flagged_;
  } else if (e.name == event::alert_opened) {
    ++alerts_opened_;
  } else if (e.name == event::store_busy) {
    ++store_busy_;
  } else if (e.name == event::store_degraded) {
    ++store_degraded_;
  } else if (e.name == event::claim_recovered) {
    ++claims_recovered_;
  } else if (e.name == event::claim_lost) {
    ++claims_lost_;
  }
}

double metrics::delivered_per_minute(std::int64_t now_ms) const {
  std::lock_guard lock(mutex_);
  std::int64_t n = 0;
  for (auto t : recent_deliveries_ms_) n += t >= now_ms - rate_window_ms ? 1 : 0;
  return static_cast<double>(n) / 5.0;
}

std::string metrics::prometheus_text(const metrics_snapshot& s, std::int64_t now_ms) const {
  std::string out;
  family(out, "migraine_records", "gauge", "Records in the outbox by state.");
  for (const auto& [state, n] : s.status.records) {
    sample(out, "migraine_records{state=\"" + std::string(to_string(state)) + "\"}", static_cast<double>(n));
  }
  family(out, "migraine_dead_letters", "gauge", "Records the EHR refused or that ran out of attempts, waiting for replay.");
  const auto dead = s.status.records.find(record_state::dead);
  sample(out, "migraine_dead_letters", dead == s.status.records.end() ? 0.0 : static_cast<double>(dead->second));
  family(out, "migraine_quarantined_records", "gauge", "Records rejected at intake, kept with their problems.");
  sample(out, "migraine_quarantined_records", static_cast<double>(s.status.quarantined));
  family(out, "migraine_oldest_pending_age_seconds", "gauge",
         "Age of the oldest record not yet delivered (0 when none waits).");
  sample(out, "migraine_oldest_pending_age_seconds",
         s.status.oldest_pending_age_ms ? static_cast<double>(*s.status.oldest_pending_age_ms) / 1000.0 : 0.0);
  family(out, "migraine_ehr_reachable", "gauge", "1 when the last attempt to reach the EHR got an HTTP answer.");
  sample(out, "migraine_ehr_reachable", s.status.ehr_reached ? 1 : 0);
  family(out, "migraine_ehr_last_contact_age_seconds", "gauge", "Seconds since the EHR was last tried (-1: never).");
  sample(out, "migraine_ehr_last_contact_age_seconds",
         s.status.ehr_last_contact_ms ? static_cast<double>(now_ms - *s.status.ehr_last_contact_ms) / 1000.0 : -1.0);
  family(out, "migraine_certificate_expiry_days", "gauge",
         "Days until each configured certificate expires (negative: expired; -100000: unreadable).");
  for (const auto& c : s.certificates) {
    sample(out, "migraine_certificate_expiry_days{setting=\"" + label(c.setting) + "\"}",
           c.days_left ? static_cast<double>(*c.days_left) : -100000.0);
  }
  family(out, "migraine_alert_open", "gauge", "1 for each alert open now.");
  for (const auto& a : s.alerts) sample(out, "migraine_alert_open{alert=\"" + label(a.key) + "\"}", 1);
  family(out, "migraine_ready", "gauge", "1 when /readyz answers 200.");
  sample(out, "migraine_ready", s.ready ? 1 : 0);
  family(out, "migraine_store_degraded", "gauge", "1 while delivery waits for the store to take writes again.");
  sample(out, "migraine_store_degraded", s.store_degraded ? 1 : 0);
  family(out, "migraine_store_in_flight_owners", "gauge", "Processes registered on the store to claim records.");
  sample(out, "migraine_store_in_flight_owners", static_cast<double>(s.status.owners.size()));
  // Each process registered on the store (several instances on one PostgreSQL store): labelled
  // by kind, pid and host, never by anything a record holds.
  const auto owner_labels = [&](const owner_summary& o) {
    return "kind=\"" + label(o.kind) + "\",pid=\"" + std::to_string(o.pid) + "\",host=\"" + label(o.host) +
           "\",this=\"" + (o.id == s.self_owner ? "true" : "false") + "\"";
  };
  family(out, "migraine_store_owner_alive", "gauge", "1 while a process registered on the store lives (0: its claims are taken back).");
  for (const auto& o : s.status.owners) sample(out, "migraine_store_owner_alive{" + owner_labels(o) + "}", o.alive ? 1 : 0);
  family(out, "migraine_store_owner_in_flight", "gauge", "Records each process registered on the store holds in flight.");
  for (const auto& o : s.status.owners) sample(out, "migraine_store_owner_in_flight{" + owner_labels(o) + "}", o.claims);
  family(out, "migraine_store_owner_leads", "gauge", "1 for each role a process holds the lease of (alerts: evaluates and posts them).");
  for (const auto& o : s.status.owners) {
    for (const auto& role : o.leads) {
      sample(out, "migraine_store_owner_leads{" + owner_labels(o) + ",role=\"" + label(role) + "\"}", 1);
    }
  }
  family(out, "migraine_maybe_at_ehr_records", "gauge",
         "Undelivered revisions that were sent without an answer: possibly at the EHR.");
  sample(out, "migraine_maybe_at_ehr_records", static_cast<double>(s.status.maybe_at_ehr));
  family(out, "migraine_sync_log_failed_writes_total", "counter", "Sync log lines that could not be written.");
  sample(out, "migraine_sync_log_failed_writes_total", static_cast<double>(s.log_failed_writes));
  family(out, "migraine_sync_log_writable", "gauge", "1 while the sync log takes lines, 0 while its writes fail.");
  sample(out, "migraine_sync_log_writable", s.log_writable ? 1 : 0);

  // One family per figure, one sample per listener.
  const auto per_listener = [&](const char* name, const char* type, const char* help,
                                std::int64_t listener_figures::*figure) {
    family(out, name, type, help);
    for (const auto& l : s.listeners) {
      sample(out, std::string(name) + "{listener=\"" + label(l.name) + "\"}", static_cast<double>(l.*figure));
    }
  };
  per_listener("migraine_listener_connections", "gauge", "Open connections per listener.", &listener_figures::open);
  per_listener("migraine_listener_evicted_total", "counter",
               "Connections not yet past authentication closed to make room for a newcomer.",
               &listener_figures::evicted);
  per_listener("migraine_listener_refused_total", "counter",
               "Connections turned away because every slot (or the client's share) was held by authenticated ones.",
               &listener_figures::refused);
  per_listener("migraine_listener_tls_handshake_failures_total", "counter", "TLS handshakes a listener refused.",
               &listener_figures::handshake_failures);

  std::lock_guard lock(mutex_);
  family(out, "migraine_records_received_total", "counter", "Records stored durably by intake, by channel.");
  for (const auto& [channel, n] : received_by_channel_) {
    sample(out, "migraine_records_received_total{channel=\"" + label(channel) + "\"}", static_cast<double>(n));
  }
  family(out, "migraine_records_rejected_total", "counter", "Records refused by intake, by channel.");
  for (const auto& [channel, n] : rejected_by_channel_) {
    sample(out, "migraine_records_rejected_total{channel=\"" + label(channel) + "\"}", static_cast<double>(n));
  }
  family(out, "migraine_deliveries_total", "counter", "Records the EHR accepted.");
  sample(out, "migraine_deliveries_total", static_cast<double>(delivered_));
  family(out, "migraine_retries_total", "counter", "Attempts that failed and were scheduled again, by reason.");
  for (const auto& [reason, n] : retries_by_reason_) {
    sample(out, "migraine_retries_total{reason=\"" + reason + "\"}", static_cast<double>(n));
  }
  family(out, "migraine_dead_lettered_total", "counter", "Records moved to the dead letters.");
  sample(out, "migraine_dead_lettered_total", static_cast<double>(dead_lettered_));
  family(out, "migraine_replayed_total", "counter", "Dead letters replayed through this process.");
  sample(out, "migraine_replayed_total", static_cast<double>(replayed_));
  family(out, "migraine_token_requests_total", "counter", "Requests to the EHR's token endpoint (ehr.auth).");
  sample(out, "migraine_token_requests_total", static_cast<double>(s.token_requests));
  family(out, "migraine_token_failures_total", "counter", "Token requests refused or unanswered.");
  sample(out, "migraine_token_failures_total", static_cast<double>(s.token_failures));
  family(out, "migraine_auth_faults_total", "counter", "Answers 401/403: delivery paused.");
  sample(out, "migraine_auth_faults_total", static_cast<double>(auth_faults_));
  family(out, "migraine_write_refusals_total", "counter",
         "Writes the EHR refused as a whole (405, 501, not-supported): delivery paused, nothing dead-lettered.");
  sample(out, "migraine_write_refusals_total", static_cast<double>(write_refusals_));
  family(out, "migraine_tls_faults_total", "counter", "TLS handshakes with the EHR that failed.");
  sample(out, "migraine_tls_faults_total", static_cast<double>(tls_faults_));
  family(out, "migraine_flagged_total", "counter", "Records mapped with clinical flags.");
  sample(out, "migraine_flagged_total", static_cast<double>(flagged_));
  family(out, "migraine_alerts_opened_total", "counter", "Alerts opened.");
  sample(out, "migraine_alerts_opened_total", static_cast<double>(alerts_opened_));
  family(out, "migraine_store_busy_total", "counter", "Store writes that found it locked past the busy timeout.");
  sample(out, "migraine_store_busy_total", static_cast<double>(store_busy_));
  family(out, "migraine_store_degraded_total", "counter", "Times delivery had to wait for the store.");
  sample(out, "migraine_store_degraded_total", static_cast<double>(store_degraded_));
  family(out, "migraine_claims_recovered_total", "counter", "Claims taken back from a process that died or stalled.");
  sample(out, "migraine_claims_recovered_total", static_cast<double>(claims_recovered_));
  family(out, "migraine_claims_lost_total", "counter", "Answers not recorded because another process took the claim over.");
  sample(out, "migraine_claims_lost_total", static_cast<double>(claims_lost_));
  family(out, "migraine_delivery_latency_seconds", "histogram",
         "From sending a record's transaction to the EHR's accepting answer.");
  for (std::size_t i = 0; i < latency_buckets.size(); ++i) {
    char le[32];
    std::snprintf(le, sizeof le, "%g", latency_buckets[i]);
    sample(out, std::string("migraine_delivery_latency_seconds_bucket{le=\"") + le + "\"}",
           static_cast<double>(latency_counts_[i]));
  }
  sample(out, "migraine_delivery_latency_seconds_bucket{le=\"+Inf\"}", static_cast<double>(latency_count_));
  sample(out, "migraine_delivery_latency_seconds_sum", latency_sum_s_);
  sample(out, "migraine_delivery_latency_seconds_count", static_cast<double>(latency_count_));
  return out;
}

}  // namespace connector
