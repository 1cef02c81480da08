// The last 24 hours of deliveries, retries, dead letters and time from arrival to delivery, for
// the status page's charts: 288 five-minute slots in a ring, each with three counts and a
// latency histogram, so the memory is fixed (about 95 KiB) however busy the day was. Kept in
// memory: a restart starts the series again. Counts only, never a record or a patient.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "connector/observe/sync_event.h"

namespace connector {

// One bin of a view: its counts, and how long deliveries took from arrival (p50 and p95 as upper
// bounds: "95 % were delivered within p95_ms"), over the deliveries whose arrival is known.
struct series_bin {
  std::int64_t start_ms = 0;
  std::int64_t delivered = 0, retries = 0, dead_lettered = 0;
  std::int64_t measured = 0;  // deliveries with a known arrival time, which the latencies cover
  std::optional<std::int64_t> p50_ms, p95_ms;
};

struct series_view {
  std::int64_t width_ms = 0;
  std::int64_t from_ms = 0, to_ms = 0;  // the first bin's start, the last bin's end (the last holds now)
  std::vector<series_bin> bins;         // oldest first
  series_bin total;                     // the whole window
};

class delivery_series : public event_sink {
 public:
  static constexpr std::int64_t slot_ms = 5 * 60 * 1000;
  static constexpr int slots = 288;
  static constexpr std::int64_t span_ms = slot_ms * slots;  // 24 h
  // Upper bounds of the latency histogram in ms, ten a decade (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8)
  // from 10 ms to 10^9 ms (11.6 days), round figures a third apart at most; one more bucket holds the rest.
  static constexpr int latency_bounds = 81;
  static const std::array<std::int64_t, latency_bounds>& latency_upper_ms();

  // delivered (with its received_at_ms), dead_lettered, retry_scheduled (and a record's tls_fault,
  // a retry too).
  void emit(const sync_event& e) override;

  // The feeds emit uses; latency_ms is from arrival to delivery, when known.
  void add_delivery(std::int64_t at_ms, std::optional<std::int64_t> latency_ms);
  void add_retry(std::int64_t at_ms);
  void add_dead_letter(std::int64_t at_ms);

  // Bins of width_ms (a multiple of slot_ms that divides span_ms) aligned to multiples of it
  // since the epoch, the last one holding now_ms: 24 hourly bins for width 3600000.
  series_view view(std::int64_t now_ms, std::int64_t width_ms) const;
  static bool valid_width(std::int64_t width_ms) {
    return width_ms >= slot_ms && width_ms % slot_ms == 0 && span_ms % width_ms == 0;
  }

  // The smallest bound at or under which at least `percent` % of the counts lie; nullopt when
  // there are none. A quantile beyond the last bound reads as that bound.
  using histogram = std::array<std::uint32_t, latency_bounds + 1>;
  static std::optional<std::int64_t> quantile_ms(const histogram& h, int percent);

 private:
  struct slot {
    std::int64_t index = -1;  // slot number since the epoch; -1: never used
    std::uint32_t delivered = 0, retries = 0, dead_lettered = 0;
    histogram latency{};
  };
  slot& slot_at(std::int64_t at_ms);  // under mutex_, reset when it held an older (or newer) slot

  mutable std::mutex mutex_;
  std::vector<slot> ring_ = std::vector<slot>(slots);  // on the heap: the daemon lives on the stack
};

// The view as the admin API's /api/series answers it (see admin_api.h).
std::string series_json(const series_view& v, std::int64_t now_ms, std::int64_t since_ms);

}  // namespace connector
