// The status page's 24-hour series: slots rolling over a day on a fake clock, percentiles against
// figures worked out by hand, latency from the arrival the event carries, the JSON it is served as, and
// events written from several threads while another reads.
#include "connector/observe/delivery_series.h"

#include <atomic>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "connector/observe/metrics.h"
#include "connector/outbox/outbox.h"
#include "fhir/json_value.h"

namespace {

using namespace connector;

constexpr std::int64_t minute = 60 * 1000;
constexpr std::int64_t hour = 60 * minute;
constexpr std::int64_t t0 = 1795514400000;  // a whole hour (2026-11-24T10:00:00Z)
static_assert(t0 % hour == 0);

// Each latency counted in the first bucket whose bound is at or above it.
delivery_series::histogram histogram_of(const std::vector<std::int64_t>& latencies_ms) {
  delivery_series::histogram h{};
  const auto& bounds = delivery_series::latency_upper_ms();
  for (auto ms : latencies_ms) {
    std::size_t i = 0;
    while (i < bounds.size() && bounds[i] < ms) ++i;
    ++h[i];
  }
  return h;
}

sync_event ev(std::string_view name, std::int64_t at, std::string record_id = "", int revision = 1) {
  sync_event e;
  e.time_ms = at;
  e.name = name;
  e.record_id = std::move(record_id);
  e.revision = revision;
  return e;
}

TEST(delivery_series, latency_bounds_are_ten_a_decade_from_10_ms_to_11_days) {
  const auto& b = delivery_series::latency_upper_ms();
  EXPECT_EQ(b.front(), 10);
  EXPECT_EQ(b[1], 12);
  EXPECT_EQ(b[9], 80);
  EXPECT_EQ(b[10], 100);
  EXPECT_EQ(b[30], 10000);
  EXPECT_EQ(b.back(), 1000000000);
  for (std::size_t i = 1; i < b.size(); ++i) {
    EXPECT_GT(b[i], b[i - 1]);
    EXPECT_LE(b[i] * 3, b[i - 1] * 4) << "a step over a third at " << b[i];
  }
}

TEST(delivery_series, percentiles_are_the_bound_of_the_nearest_rank) {
  // 20 deliveries: 18 of 1 s, one of 4.5 s, one of 70 s. The median (10th) is 1 s, in the
  // bucket up to 1000 ms; the 95th percentile is the 19th, 4.5 s, in the bucket up to 5000 ms.
  std::vector<std::int64_t> twenty(18, 1000);
  twenty.push_back(4500);
  twenty.push_back(70000);
  const auto h = histogram_of(twenty);
  EXPECT_EQ(delivery_series::quantile_ms(h, 50), 1000);
  EXPECT_EQ(delivery_series::quantile_ms(h, 95), 5000);
  EXPECT_EQ(delivery_series::quantile_ms(h, 100), 80000);

  // 10, 20, ... 1000 ms: the 50th is 500 ms (a bound itself), the 95th is 950 ms, under 1000.
  std::vector<std::int64_t> hundred;
  for (int i = 1; i <= 100; ++i) hundred.push_back(i * 10);
  const auto g = histogram_of(hundred);
  EXPECT_EQ(delivery_series::quantile_ms(g, 50), 500);
  EXPECT_EQ(delivery_series::quantile_ms(g, 95), 1000);

  // A rank that is not whole rounds up: of 3 the median is the 2nd, of 10 the 95th percentile the 10th.
  EXPECT_EQ(delivery_series::quantile_ms(histogram_of({100, 200, 5000}), 50), 200);
  std::vector<std::int64_t> ten(9, 100);
  ten.push_back(5000);
  EXPECT_EQ(delivery_series::quantile_ms(histogram_of(ten), 95), 5000);

  EXPECT_EQ(delivery_series::quantile_ms({}, 50), std::nullopt);
  EXPECT_EQ(delivery_series::quantile_ms(histogram_of({0}), 95), 10);
  EXPECT_EQ(delivery_series::quantile_ms(histogram_of({2000000000}), 50), 1000000000) << "beyond the last bound";
}

TEST(delivery_series, a_view_sums_slots_into_bins_and_gives_their_percentiles) {
  delivery_series s;
  for (int i = 0; i < 3; ++i) s.add_delivery(t0 + minute, 400);   // hour 0: 3, latency known
  s.add_delivery(t0 + 2 * hour + 10 * minute, std::nullopt);      // hour 2: 1, arrival unknown
  s.add_retry(t0 + 2 * hour + 10 * minute);
  s.add_retry(t0 + 2 * hour + 50 * minute);
  s.add_dead_letter(t0 + 23 * hour);
  s.add_delivery(t0 + 23 * hour + 5 * minute, 9000);

  const auto v = s.view(t0 + 23 * hour + 59 * minute, hour);
  EXPECT_EQ(v.width_ms, hour);
  ASSERT_EQ(v.bins.size(), 24u);
  EXPECT_EQ(v.from_ms, t0);
  EXPECT_EQ(v.to_ms, t0 + 24 * hour);
  EXPECT_EQ(v.bins[0].start_ms, t0);
  EXPECT_EQ(v.bins[0].delivered, 3);
  EXPECT_EQ(v.bins[0].measured, 3);
  EXPECT_EQ(v.bins[0].p50_ms, 400);
  EXPECT_EQ(v.bins[0].p95_ms, 400);
  EXPECT_EQ(v.bins[1].delivered, 0);
  EXPECT_EQ(v.bins[1].p50_ms, std::nullopt);
  EXPECT_EQ(v.bins[2].delivered, 1);
  EXPECT_EQ(v.bins[2].measured, 0);
  EXPECT_EQ(v.bins[2].p95_ms, std::nullopt);
  EXPECT_EQ(v.bins[2].retries, 2);
  EXPECT_EQ(v.bins[23].dead_lettered, 1);
  EXPECT_EQ(v.bins[23].p95_ms, 10000);
  EXPECT_EQ(v.total.delivered, 5);
  EXPECT_EQ(v.total.retries, 2);
  EXPECT_EQ(v.total.dead_lettered, 1);
  EXPECT_EQ(v.total.measured, 4);
  EXPECT_EQ(v.total.p50_ms, 400);    // 400, 400, 400, 9000: the 2nd
  EXPECT_EQ(v.total.p95_ms, 10000);  // the 4th

  // Five-minute bins: 288 of them, the last holding now.
  const auto fine = s.view(t0 + 23 * hour + 59 * minute, delivery_series::slot_ms);
  ASSERT_EQ(fine.bins.size(), 288u);
  EXPECT_EQ(fine.to_ms, t0 + 24 * hour);
  EXPECT_EQ(fine.bins.front().start_ms, t0);
  EXPECT_EQ(fine.bins.front().delivered, 3);
  EXPECT_EQ(fine.bins[26].retries, 1);  // 2 h 10 min
  EXPECT_EQ(fine.bins[34].retries, 1);  // 2 h 50 min
}

TEST(delivery_series, a_day_later_the_slots_roll_over) {
  delivery_series s;
  for (int i = 0; i < 3; ++i) s.add_delivery(t0 + minute, 400);
  s.add_delivery(t0 + 2 * hour, 400);

  // At t0 + 24 h the first hour has left the window, though nothing overwrote its slot yet.
  auto v = s.view(t0 + 24 * hour, hour);
  EXPECT_EQ(v.from_ms, t0 + hour);
  EXPECT_EQ(v.total.delivered, 1);
  EXPECT_EQ(v.bins.back().start_ms, t0 + 24 * hour);

  // A delivery a day after the first lands in its slot and starts it again: 1, not 4.
  s.add_delivery(t0 + 24 * hour + minute, 700);
  v = s.view(t0 + 24 * hour + 2 * minute, delivery_series::slot_ms);
  EXPECT_EQ(v.bins.back().delivered, 1);
  EXPECT_EQ(v.bins.back().p95_ms, 800);
  EXPECT_EQ(v.total.delivered, 2);
  EXPECT_EQ(v.total.measured, 2);
  // ... and a view from before (a wall clock set back) no longer finds the old day's counts.
  EXPECT_EQ(s.view(t0 + 23 * hour, hour).bins.front().delivered, 0);

  // A day and a half of nothing: an empty window, every bin zero.
  v = s.view(t0 + 60 * hour, hour);
  EXPECT_EQ(v.total.delivered, 0);
  for (const auto& b : v.bins) EXPECT_EQ(b.delivered + b.retries + b.dead_lettered, 0);
}

TEST(delivery_series, widths_must_tile_the_day_in_whole_slots) {
  EXPECT_TRUE(delivery_series::valid_width(5 * minute));
  EXPECT_TRUE(delivery_series::valid_width(15 * minute));
  EXPECT_TRUE(delivery_series::valid_width(hour));
  EXPECT_TRUE(delivery_series::valid_width(24 * hour));
  EXPECT_FALSE(delivery_series::valid_width(0));
  EXPECT_FALSE(delivery_series::valid_width(minute));
  EXPECT_FALSE(delivery_series::valid_width(7 * minute));
  EXPECT_FALSE(delivery_series::valid_width(35 * minute));  // a multiple of 5 min, but 86400 s / 2100 s is not whole
  EXPECT_FALSE(delivery_series::valid_width(48 * hour));
  EXPECT_TRUE(delivery_series{}.view(t0, 7 * minute).bins.empty());
}

// A delivered event as the engine emits it: with the revision's arrival from the store.
sync_event delivered_at(std::int64_t at, const std::string& record, std::optional<std::int64_t> arrived) {
  auto e = ev(event::delivered, at, record);
  e.received_at_ms = arrived;
  return e;
}

TEST(delivery_series, events_count_and_latency_runs_from_arrival_to_delivery) {
  delivery_series s;
  s.emit(ev(event::retry_scheduled, t0 + 60000, "A"));
  s.emit(delivered_at(t0 + 90000, "A", t0));             // 90 s: in the bucket up to 100 s
  s.emit(delivered_at(t0 + 90000, "B", std::nullopt));   // arrival unknown: counted, not measured
  s.emit(delivered_at(t0 + 90000, "C", t0 + 88000));     // 2 s

  auto tls_probe = ev(event::tls_fault, t0 + 1000);   // an idle probe's TLS failure is no retry
  s.emit(tls_probe);
  s.emit(ev(event::tls_fault, t0 + 2000, "D"));       // a record's is
  s.emit(ev(event::sent, t0 + 3000, "D"));            // not charted
  s.emit(ev(event::received, t0 + 3000, "D"));        // nor this

  auto v = s.view(t0 + 2 * minute, hour);
  EXPECT_EQ(v.total.delivered, 3);
  EXPECT_EQ(v.total.measured, 2);
  EXPECT_EQ(v.total.p50_ms, 2000);
  EXPECT_EQ(v.total.p95_ms, 100000);
  EXPECT_EQ(v.total.retries, 2);
  EXPECT_EQ(v.total.dead_lettered, 0);

  // A dead letter replayed and delivered counts from its arrival, as the store keeps it.
  s.emit(ev(event::dead_lettered, t0 + 2 * minute, "E", 1));
  s.emit(delivered_at(t0 + 11 * minute, "E", t0 + minute));  // 10 min
  s.emit(delivered_at(t0 + 4 * minute, "F", t0 + 2 * minute));  // 2 min: up to 120 s
  v = s.view(t0 + 12 * minute, hour);
  EXPECT_EQ(v.total.delivered, 5);
  EXPECT_EQ(v.total.dead_lettered, 1);
  EXPECT_EQ(v.total.measured, 4);     // A 90 s, C 2 s, E 10 min, F 2 min
  EXPECT_EQ(v.total.p50_ms, 100000);  // the 2nd of 2 s, 90 s, 120 s, 600 s
  EXPECT_EQ(v.total.p95_ms, 600000);
}

TEST(delivery_series, metrics_feed_their_series) {
  metrics m;
  m.emit(delivered_at(t0 + 1500, "A", t0));
  m.emit(ev(event::dead_lettered, t0 + 1500, "B"));
  const auto v = m.series().view(t0 + 2000, hour);
  EXPECT_EQ(v.total.delivered, 1);
  EXPECT_EQ(v.total.dead_lettered, 1);
  EXPECT_EQ(v.total.p95_ms, 1500);
}

TEST(delivery_series, json_has_one_entry_per_bin_and_nulls_where_nothing_was_measured) {
  delivery_series s;
  s.add_delivery(t0 + 22 * hour + minute, 1200);
  s.add_delivery(t0 + 22 * hour + minute, 9000);
  s.add_delivery(t0 + 22 * hour + 2 * minute, std::nullopt);
  s.add_retry(t0 + 23 * hour);
  const std::int64_t now = t0 + 23 * hour + 30 * minute;
  const std::string text = series_json(s.view(now, hour), now, t0 + 20 * hour);
  fhir::json_value j;
  ASSERT_EQ(fhir::parse_json_value(text, j, false), "") << text;
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j.find("width_s")->number, 3600);
  EXPECT_EQ(j.find("from")->text, "2026-11-24T10:00:00.000Z");
  EXPECT_EQ(j.find("to")->text, "2026-11-25T10:00:00.000Z");
  EXPECT_EQ(j.find("now")->text, "2026-11-25T09:30:00.000Z");
  EXPECT_EQ(j.find("since")->text, "2026-11-25T06:00:00.000Z");
  for (const char* column : {"delivered", "retries", "dead_lettered", "latency_measured", "latency_p50_ms",
                             "latency_p95_ms"}) {
    ASSERT_NE(j.find(column), nullptr) << column;
    EXPECT_EQ(j.find(column)->items.size(), 24u) << column;
  }
  EXPECT_EQ(j.find("delivered")->items[22].number, 3);
  EXPECT_EQ(j.find("latency_measured")->items[22].number, 2);
  EXPECT_EQ(j.find("latency_p50_ms")->items[22].number, 1200);
  EXPECT_EQ(j.find("latency_p95_ms")->items[22].number, 10000);
  EXPECT_EQ(j.find("latency_p95_ms")->items[21].type, fhir::json_value::kind::null);
  EXPECT_EQ(j.find("retries")->items[23].number, 1);
  const auto* total = j.find("total");
  ASSERT_NE(total, nullptr);
  EXPECT_EQ(total->find("delivered")->number, 3);
  EXPECT_EQ(total->find("retries")->number, 1);
  EXPECT_EQ(total->find("latency_measured")->number, 2);
  EXPECT_EQ(total->find("latency_p50_ms")->number, 1200);
  EXPECT_EQ(total->find("latency_p95_ms")->number, 10000);
}

TEST(delivery_series, events_from_several_threads_while_another_reads) {
  delivery_series s;
  constexpr int threads = 4, each = 20000;  // enough that a missing lock crashes or loses counts
  std::atomic<bool> done{false};
  std::int64_t reads = 0;
  std::thread reader([&] {
    while (!done.load()) {
      const auto v = s.view(t0 + hour, hour);
      EXPECT_LE(v.total.delivered, threads * each);
      ++reads;
    }
  });
  std::vector<std::thread> writers;
  for (int t = 0; t < threads; ++t) {
    writers.emplace_back([&s, t] {
      for (int i = 0; i < each; ++i) {
        const std::string id = "T" + std::to_string(t) + "-" + std::to_string(i);
        const std::int64_t at = t0 + (i % 12) * delivery_series::slot_ms;
        s.emit(delivered_at(at + 250, id, at));
        if (i % 10 == 0) s.emit(ev(event::retry_scheduled, at, id));
      }
    });
  }
  for (auto& w : writers) w.join();
  done = true;
  reader.join();
  const auto v = s.view(t0 + hour, hour);
  EXPECT_EQ(v.total.delivered, threads * each);
  EXPECT_EQ(v.total.measured, threads * each);
  EXPECT_EQ(v.total.retries, threads * each / 10);
  EXPECT_EQ(v.total.p95_ms, 250);
  EXPECT_GT(reads, 0);
}

}  // namespace
