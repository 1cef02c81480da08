// The delivery series: slots filled from events, views summed from slots, and its JSON.
#include "connector/observe/delivery_series.h"

#include <algorithm>

#include "connector/observe/sync_log.h"
#include "connector/outbox/outbox.h"
#include "fhir/json_writer.h"

namespace connector {
namespace {

std::int64_t floor_div(std::int64_t a, std::int64_t b) { return a / b - (a % b != 0 && (a < 0) != (b < 0) ? 1 : 0); }


void add_histogram(delivery_series::histogram& into, const delivery_series::histogram& from) {
  for (std::size_t i = 0; i < into.size(); ++i) into[i] += from[i];
}

std::int64_t sum_of(const delivery_series::histogram& h) {
  std::int64_t n = 0;
  for (auto c : h) n += c;
  return n;
}

}  // namespace

const std::array<std::int64_t, delivery_series::latency_bounds>& delivery_series::latency_upper_ms() {
  static const auto bounds = [] {
    std::array<std::int64_t, latency_bounds> b{};
    constexpr std::array<std::int64_t, 10> steps = {10, 12, 15, 20, 25, 30, 40, 50, 60, 80};
    std::size_t i = 0;
    for (std::int64_t decade = 1; i + 1 < b.size(); decade *= 10) {
      for (auto s : steps) b[i++] = s * decade;
    }
    b[i] = 1000000000;
    return b;
  }();
  return bounds;
}

std::optional<std::int64_t> delivery_series::quantile_ms(const histogram& h, int percent) {
  const std::int64_t n = sum_of(h);
  if (n == 0) return std::nullopt;
  // Nearest rank: the ceil(n * percent / 100)-th smallest count.
  const std::int64_t rank = std::max<std::int64_t>(1, (n * percent + 99) / 100);
  std::int64_t seen = 0;
  const auto& bounds = latency_upper_ms();
  for (std::size_t i = 0; i < h.size(); ++i) {
    seen += h[i];
    if (seen >= rank) return bounds[std::min(i, bounds.size() - 1)];
  }
  return bounds.back();
}

delivery_series::slot& delivery_series::slot_at(std::int64_t at_ms) {
  const std::int64_t index = floor_div(at_ms, slot_ms);
  slot& s = ring_[static_cast<std::size_t>(index - floor_div(index, slots) * slots)];
  // Another slot's counts (a day older, or left ahead by a wall clock that jumped and came back,
  // which a view never shows): this slot starts again.
  if (s.index != index) s = slot{index};
  return s;
}

void delivery_series::add_delivery(std::int64_t at_ms, std::optional<std::int64_t> latency_ms) {
  std::lock_guard lock(mutex_);
  slot& s = slot_at(at_ms);
  ++s.delivered;
  if (latency_ms) {
    const auto& bounds = latency_upper_ms();
    const auto bucket = std::lower_bound(bounds.begin(), bounds.end(), std::max<std::int64_t>(0, *latency_ms));
    ++s.latency[static_cast<std::size_t>(bucket - bounds.begin())];
  }
}

void delivery_series::add_retry(std::int64_t at_ms) {
  std::lock_guard lock(mutex_);
  ++slot_at(at_ms).retries;
}

void delivery_series::add_dead_letter(std::int64_t at_ms) {
  std::lock_guard lock(mutex_);
  ++slot_at(at_ms).dead_lettered;
}

void delivery_series::emit(const sync_event& e) {
  if (e.name == event::delivered) {
    // The arrival is the store's: the revision's received_at, carried by the claim, so a record
    // that arrived before a restart or through another process is measured too.
    std::optional<std::int64_t> latency;
    if (e.received_at_ms) latency = e.time_ms - *e.received_at_ms;
    add_delivery(e.time_ms, latency);
  } else if (e.name == event::dead_lettered) {
    add_dead_letter(e.time_ms);
  } else if (e.name == event::retry_scheduled || (e.name == event::tls_fault && !e.record_id.empty())) {
    add_retry(e.time_ms);  // as the metrics count retries: a record's TLS failure is one, an idle probe's is not
  }
}

series_view delivery_series::view(std::int64_t now_ms, std::int64_t width_ms) const {
  series_view v;
  if (!valid_width(width_ms)) return v;
  v.width_ms = width_ms;
  const std::int64_t per_bin = width_ms / slot_ms;
  const std::int64_t bins = span_ms / width_ms;
  const std::int64_t now_slot = floor_div(now_ms, slot_ms);
  const std::int64_t last_start = floor_div(now_slot, per_bin) * per_bin;
  const std::int64_t first_start = last_start - (bins - 1) * per_bin;
  v.from_ms = first_start * slot_ms;
  v.to_ms = (last_start + per_bin) * slot_ms;
  v.total.start_ms = v.from_ms;
  histogram all{};
  std::lock_guard lock(mutex_);
  for (std::int64_t b = 0; b < bins; ++b) {
    series_bin bin;
    const std::int64_t start = first_start + b * per_bin;
    bin.start_ms = start * slot_ms;
    histogram latency{};
    for (std::int64_t index = start; index < start + per_bin; ++index) {
      if (index > now_slot || index <= now_slot - slots) continue;
      const slot& s = ring_[static_cast<std::size_t>(index - floor_div(index, slots) * slots)];
      if (s.index != index) continue;
      bin.delivered += s.delivered;
      bin.retries += s.retries;
      bin.dead_lettered += s.dead_lettered;
      add_histogram(latency, s.latency);
    }
    bin.measured = sum_of(latency);
    bin.p50_ms = quantile_ms(latency, 50);
    bin.p95_ms = quantile_ms(latency, 95);
    add_histogram(all, latency);
    v.total.delivered += bin.delivered;
    v.total.retries += bin.retries;
    v.total.dead_lettered += bin.dead_lettered;
    v.bins.push_back(bin);
  }
  v.total.measured = sum_of(all);
  v.total.p50_ms = quantile_ms(all, 50);
  v.total.p95_ms = quantile_ms(all, 95);
  return v;
}

std::string series_json(const series_view& v, std::int64_t now_ms, std::int64_t since_ms) {
  fhir::json_writer out;
  const auto optional_ms = [&out](const std::optional<std::int64_t>& ms) { ms ? out.integer(*ms) : out.raw("null"); };
  const auto column = [&](const char* name, auto figure) {
    out.key(std::string_view(name));
    out.begin_array();
    for (const auto& b : v.bins) figure(b);
    out.end_array();
  };
  out.begin_object();
  out.member("width_s", v.width_ms / 1000);
  out.member("from", utc_text(v.from_ms));
  out.member("to", utc_text(v.to_ms));
  out.member("now", utc_text(now_ms));
  out.member("since", utc_text(since_ms));  // nothing before it is kept (the series lives in memory)
  column("delivered", [&](const series_bin& b) { out.integer(b.delivered); });
  column("retries", [&](const series_bin& b) { out.integer(b.retries); });
  column("dead_lettered", [&](const series_bin& b) { out.integer(b.dead_lettered); });
  column("latency_measured", [&](const series_bin& b) { out.integer(b.measured); });
  column("latency_p50_ms", [&](const series_bin& b) { optional_ms(b.p50_ms); });
  column("latency_p95_ms", [&](const series_bin& b) { optional_ms(b.p95_ms); });
  out.key("total");
  out.begin_object();
  out.member("delivered", v.total.delivered);
  out.member("retries", v.total.retries);
  out.member("dead_lettered", v.total.dead_lettered);
  out.member("latency_measured", v.total.measured);
  out.key("latency_p50_ms");
  optional_ms(v.total.p50_ms);
  out.key("latency_p95_ms");
  optional_ms(v.total.p95_ms);
  out.end_object();
  out.end_object();
  return std::string(out.view());
}

}  // namespace connector
