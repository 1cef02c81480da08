// The daemon's metrics in the Prometheus text format. Counters count this process's events since
// it started (Prometheus handles restarts); gauges are read from the outbox and the certificate
// files when scraped. Labels are states, reasons and setting names only: never a record or patient.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "connector/config/certificate_files.h"
#include "connector/observe/delivery_series.h"
#include "connector/observe/sync_event.h"
#include "connector/outbox/outbox.h"

namespace connector {

// One HTTP listener's connection slots (connector/net/http_server.h).
struct listener_figures {
  std::string name;  // "ingest_api", "admin"
  std::int64_t open = 0, evicted = 0, refused = 0, handshake_failures = 0;
};

// What a scrape reads besides the counters.
struct metrics_snapshot {
  outbox_status status;
  std::vector<certificate_days> certificates;
  std::vector<open_alert> alerts;
  bool ready = false;
  bool store_degraded = false;  // delivery waits for the store to take writes again
  std::int64_t log_failed_writes = 0;
  bool log_writable = true;
  std::int64_t token_requests = 0;  // to the EHR's token endpoint (ehr.auth)
  std::int64_t token_failures = 0;
  std::vector<listener_figures> listeners;
  std::int64_t self_owner = 0;  // this process among status.owners
};

class metrics : public event_sink {
 public:
  void emit(const sync_event& e) override;

  // Records delivered per minute over the last five minutes (for the status page).
  double delivered_per_minute(std::int64_t now_ms) const;

  std::string prometheus_text(const metrics_snapshot& snapshot, std::int64_t now_ms) const;

  // The last 24 hours in five-minute slots, for the status page's charts (fed by emit).
  const delivery_series& series() const { return series_; }

  // Upper bounds of the delivery latency histogram, in seconds.
  static constexpr std::array<double, 10> latency_buckets = {0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};

 private:
  mutable std::mutex mutex_;
  std::map<std::string, std::int64_t> received_by_channel_;
  std::map<std::string, std::int64_t> rejected_by_channel_;
  std::map<std::string, std::int64_t> retries_by_reason_;
  std::int64_t delivered_ = 0, dead_lettered_ = 0, replayed_ = 0, auth_faults_ = 0, write_refusals_ = 0,
               tls_faults_ = 0, held_ = 0, flagged_ = 0, alerts_opened_ = 0, store_busy_ = 0, store_degraded_ = 0, claims_recovered_ = 0,
               claims_lost_ = 0;
  std::array<std::int64_t, latency_buckets.size()> latency_counts_{};
  std::int64_t latency_count_ = 0;
  double latency_sum_s_ = 0;
  std::deque<std::int64_t> recent_deliveries_ms_;  // the last five minutes' delivery times
  delivery_series series_;                         // its own lock
};

}  // namespace connector
