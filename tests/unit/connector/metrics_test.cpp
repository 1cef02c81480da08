// The Prometheus metrics: counters from events, the latency histogram, the delivery rate, the
// gauges of a scrape, and no label that could carry a record or a patient.
#include "connector/observe/metrics.h"

#include <cstdlib>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include <gtest/gtest.h>

namespace {

using namespace connector;

constexpr std::int64_t minute = 60 * 1000;
constexpr std::int64_t t0 = 1795514700000;

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// The value of one series ("name" or "name{label=\"v\"}"), or nullopt when it is not there.
std::optional<double> value_of(const std::string& text, const std::string& series) {
  std::optional<double> found;
  for (const auto& line : lines_of(text)) {
    if (line.rfind(series + " ", 0) == 0) {
      EXPECT_FALSE(found.has_value()) << "twice: " << series;
      found = std::strtod(line.c_str() + series.size() + 1, nullptr);
    }
  }
  return found;
}

sync_event ev(std::string_view name, std::int64_t time_ms = t0) {
  sync_event e;
  e.time_ms = time_ms;
  e.name = name;
  return e;
}

sync_event received(std::string channel) {
  auto e = ev(event::received);
  e.channel = std::move(channel);
  return e;
}

sync_event retry(int http_status, std::string detail) {
  auto e = ev(event::retry_scheduled);
  e.http_status = http_status;
  e.detail = std::move(detail);
  return e;
}

sync_event delivered_after(std::int64_t latency_ms, std::int64_t time_ms = t0) {
  auto e = ev(event::delivered, time_ms);
  e.latency_ms = latency_ms;
  return e;
}

TEST(metrics, counts_received_and_rejected_records_by_channel) {
  metrics m;
  m.emit(received("api"));
  m.emit(received("api"));
  m.emit(received("inbox"));
  auto rejected = ev(event::rejected);
  rejected.channel = "cli";
  m.emit(rejected);
  const auto text = m.prometheus_text({}, t0);
  EXPECT_EQ(value_of(text, R"(migraine_records_received_total{channel="api"})"), 2);
  EXPECT_EQ(value_of(text, R"(migraine_records_received_total{channel="inbox"})"), 1);
  EXPECT_EQ(value_of(text, R"(migraine_records_received_total{channel="cli"})"), std::nullopt);
  EXPECT_EQ(value_of(text, R"(migraine_records_rejected_total{channel="cli"})"), 1);
}

TEST(metrics, counts_retries_by_reason) {
  metrics m;
  m.emit(retry(429, "HTTP 429: rate limited in 4 s"));
  m.emit(retry(503, "HTTP 503: server error in 2 s"));
  m.emit(retry(500, "HTTP 500: server error in 1 s"));
  m.emit(retry(0, "waiting for the answer timed out: retry in 8 s"));
  m.emit(retry(0, "connect timed out: retry in 8 s"));
  m.emit(retry(0, "Connection refused: retry in 1 s"));
  auto tls = ev(event::tls_fault);
  tls.record_id = "PROC-1";
  tls.detail = "TLS handshake failed: certificate verify failed";
  m.emit(tls);
  auto probe = ev(event::tls_fault);  // the idle daemon's probe of the EHR: a fault, but no record retried
  probe.record_id.clear();
  probe.detail = "probe of the EHR: TLS handshake: certificate not accepted";
  m.emit(probe);
  const auto text = m.prometheus_text({}, t0);
  EXPECT_EQ(value_of(text, R"(migraine_retries_total{reason="http_429"})"), 1);
  EXPECT_EQ(value_of(text, R"(migraine_retries_total{reason="http_5xx"})"), 2);
  EXPECT_EQ(value_of(text, R"(migraine_retries_total{reason="timeout"})"), 2);
  EXPECT_EQ(value_of(text, R"(migraine_retries_total{reason="connection"})"), 1);
  EXPECT_EQ(value_of(text, R"(migraine_retries_total{reason="tls"})"), 1);
  EXPECT_EQ(value_of(text, "migraine_tls_faults_total"), 2);
}

TEST(metrics, counts_the_other_events) {
  metrics m;
  m.emit(ev(event::dead_lettered));
  m.emit(ev(event::dead_lettered));
  m.emit(ev(event::replayed));
  m.emit(ev(event::auth_fault));
  m.emit(ev(event::flagged));
  m.emit(ev(event::alert_opened));
  m.emit(ev(event::alert_closed));
  m.emit(ev(event::sent));
  const auto text = m.prometheus_text({}, t0);
  EXPECT_EQ(value_of(text, "migraine_dead_lettered_total"), 2);
  EXPECT_EQ(value_of(text, "migraine_replayed_total"), 1);
  EXPECT_EQ(value_of(text, "migraine_auth_faults_total"), 1);
  EXPECT_EQ(value_of(text, "migraine_flagged_total"), 1);
  EXPECT_EQ(value_of(text, "migraine_alerts_opened_total"), 1);
  EXPECT_EQ(value_of(text, "migraine_deliveries_total"), 0);
}

TEST(metrics, the_latency_histogram_is_cumulative) {
  metrics m;
  m.emit(delivered_after(30));      // 0.03 s
  m.emit(delivered_after(100));     // exactly on the 0.1 bound: counted in it
  m.emit(delivered_after(2000));
  m.emit(delivered_after(60000));   // above every bound: +Inf only
  m.emit(ev(event::delivered));     // no latency known: a delivery, not a sample
  const auto text = m.prometheus_text({}, t0);
  const std::vector<std::pair<std::string, double>> expected = {
      {"0.025", 0}, {"0.05", 1}, {"0.1", 2}, {"0.25", 2}, {"0.5", 2}, {"1", 2},
      {"2.5", 3},   {"5", 3},    {"10", 3},  {"30", 3},   {"+Inf", 4}};
  for (const auto& [le, count] : expected) {
    EXPECT_EQ(value_of(text, "migraine_delivery_latency_seconds_bucket{le=\"" + le + "\"}"), count) << le;
  }
  EXPECT_EQ(value_of(text, "migraine_delivery_latency_seconds_count"), 4);
  const auto sum = value_of(text, "migraine_delivery_latency_seconds_sum");
  ASSERT_TRUE(sum.has_value());
  EXPECT_NEAR(*sum, 62.13, 1e-9);
  EXPECT_EQ(value_of(text, "migraine_deliveries_total"), 5);
}

TEST(metrics, the_histogram_is_there_with_zeros_before_any_delivery) {
  const auto text = metrics().prometheus_text({}, t0);
  EXPECT_EQ(value_of(text, R"(migraine_delivery_latency_seconds_bucket{le="+Inf"})"), 0);
  EXPECT_EQ(value_of(text, "migraine_delivery_latency_seconds_count"), 0);
  EXPECT_EQ(value_of(text, "migraine_delivery_latency_seconds_sum"), 0);
}

TEST(metrics, delivered_per_minute_over_the_last_five_minutes) {
  metrics m;
  EXPECT_DOUBLE_EQ(m.delivered_per_minute(t0), 0);
  for (std::int64_t at : {t0, t0 + minute, t0 + 2 * minute, t0 + 4 * minute}) m.emit(delivered_after(50, at));
  EXPECT_DOUBLE_EQ(m.delivered_per_minute(t0 + 4 * minute), 4 / 5.0);
  EXPECT_DOUBLE_EQ(m.delivered_per_minute(t0 + 5 * minute), 4 / 5.0);      // t0 is exactly five minutes old
  EXPECT_DOUBLE_EQ(m.delivered_per_minute(t0 + 5 * minute + 1), 3 / 5.0);  // t0 has left the window
  EXPECT_DOUBLE_EQ(m.delivered_per_minute(t0 + 7 * minute), 2 / 5.0);
  EXPECT_DOUBLE_EQ(m.delivered_per_minute(t0 + 10 * minute), 0);
  // Later deliveries drop the old ones, and the rate keeps counting only the window.
  for (int i = 0; i < 10; ++i) m.emit(delivered_after(50, t0 + 20 * minute));
  EXPECT_DOUBLE_EQ(m.delivered_per_minute(t0 + 20 * minute), 10 / 5.0);
}

TEST(metrics, gauges_come_from_the_snapshot) {
  metrics_snapshot s;
  s.status.records[record_state::pending] = 3;
  s.status.records[record_state::dead] = 2;
  s.status.records[record_state::delivered] = 40;
  s.status.quarantined = 5;
  s.status.oldest_pending_age_ms = 90 * 1000;
  s.status.ehr_reached = true;
  s.status.ehr_last_contact_ms = t0 - 15 * 1000;
  s.certificates = {{"ehr.client_cert_file", "/etc/mc/client.pem", 12},
                    {"admin.cert_file", "/etc/mc/admin.pem", std::nullopt},
                    {"ingest_api.cert_file", "/etc/mc/api.pem", -3}};
  s.alerts = {{"dead_letters", "2 dead letters wait for a replay", t0 - minute},
              {"certificate_expiring:ehr.client_cert_file", "expires in 12 days", t0}};
  s.ready = true;
  s.log_failed_writes = 7;
  const auto text = metrics().prometheus_text(s, t0);
  EXPECT_EQ(value_of(text, R"(migraine_records{state="pending"})"), 3);
  EXPECT_EQ(value_of(text, R"(migraine_records{state="dead"})"), 2);
  EXPECT_EQ(value_of(text, R"(migraine_records{state="delivered"})"), 40);
  EXPECT_EQ(value_of(text, "migraine_dead_letters"), 2);
  EXPECT_EQ(value_of(text, "migraine_quarantined_records"), 5);
  EXPECT_EQ(value_of(text, "migraine_oldest_pending_age_seconds"), 90);
  EXPECT_EQ(value_of(text, "migraine_ehr_reachable"), 1);
  EXPECT_EQ(value_of(text, "migraine_ehr_last_contact_age_seconds"), 15);
  EXPECT_EQ(value_of(text, R"(migraine_certificate_expiry_days{setting="ehr.client_cert_file"})"), 12);
  EXPECT_EQ(value_of(text, R"(migraine_certificate_expiry_days{setting="admin.cert_file"})"), -100000);
  EXPECT_EQ(value_of(text, R"(migraine_certificate_expiry_days{setting="ingest_api.cert_file"})"), -3);
  EXPECT_EQ(value_of(text, R"(migraine_alert_open{alert="dead_letters"})"), 1);
  EXPECT_EQ(value_of(text, R"(migraine_alert_open{alert="certificate_expiring:ehr.client_cert_file"})"), 1);
  EXPECT_EQ(value_of(text, "migraine_ready"), 1);
  EXPECT_EQ(value_of(text, "migraine_sync_log_failed_writes_total"), 7);
}

TEST(metrics, an_empty_snapshot_reads_as_nothing_waiting_and_never_contacted) {
  const auto text = metrics().prometheus_text({}, t0);
  EXPECT_EQ(value_of(text, "migraine_dead_letters"), 0);
  EXPECT_EQ(value_of(text, "migraine_oldest_pending_age_seconds"), 0);
  EXPECT_EQ(value_of(text, "migraine_ehr_reachable"), 0);
  EXPECT_EQ(value_of(text, "migraine_ehr_last_contact_age_seconds"), -1);
  EXPECT_EQ(value_of(text, "migraine_ready"), 0);
  EXPECT_EQ(text.find("migraine_alert_open{"), std::string::npos);
}

TEST(metrics, label_values_are_escaped_as_the_format_requires) {
  metrics_snapshot s;
  s.certificates = {{"odd\"setting\\x", "/x.pem", 5}};
  const auto text = metrics().prometheus_text(s, t0);
  EXPECT_EQ(value_of(text, R"(migraine_certificate_expiry_days{setting="odd\"setting\\x"})"), 5) << text;

  metrics_snapshot newline;
  newline.certificates = {{"line\nbreak", "/x.pem", 5}};
  const auto with_newline = metrics().prometheus_text(newline, t0);
  EXPECT_EQ(value_of(with_newline, R"(migraine_certificate_expiry_days{setting="line\nbreak"})"), 5) << with_newline;
}

// Every sample belongs to a family declared once with # TYPE (histograms by their base name).
TEST(metrics, every_sample_has_its_type_declared_once) {
  metrics m;
  m.emit(received("api"));
  m.emit(retry(503, "HTTP 503"));
  m.emit(delivered_after(120));
  metrics_snapshot s;
  s.status.records[record_state::pending] = 1;
  s.certificates = {{"ehr.client_cert_file", "/x.pem", 100}};
  s.alerts = {{"dead_letters", "x", t0}};
  const auto text = m.prometheus_text(s, t0);
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n');
  std::map<std::string, std::string> types;
  std::size_t samples = 0;
  for (const auto& line : lines_of(text)) {
    if (line.rfind("# TYPE ", 0) == 0) {
      std::istringstream words(line.substr(7));
      std::string name, type;
      words >> name >> type;
      EXPECT_TRUE(types.emplace(name, type).second) << "declared twice: " << name;
      EXPECT_TRUE(type == "counter" || type == "gauge" || type == "histogram") << line;
      continue;
    }
    if (line.rfind("# HELP ", 0) == 0) continue;
    ASSERT_FALSE(line.empty());
    ASSERT_NE(line[0], '#') << line;
    ++samples;
    std::string name = line.substr(0, line.find_first_of("{ "));
    if (!types.contains(name)) {
      for (const char* suffix : {"_bucket", "_sum", "_count"}) {
        if (name.ends_with(suffix)) {
          const std::string base = name.substr(0, name.size() - std::string_view(suffix).size());
          if (types.contains(base) && types[base] == "histogram") name = base;
        }
      }
    }
    EXPECT_TRUE(types.contains(name)) << "no # TYPE before: " << line;
  }
  EXPECT_GT(samples, 20u);
  EXPECT_EQ(types["migraine_records"], "gauge");
  EXPECT_EQ(types["migraine_records_received_total"], "counter");
  EXPECT_EQ(types["migraine_retries_total"], "counter");
  EXPECT_EQ(types["migraine_delivery_latency_seconds"], "histogram");
  EXPECT_EQ(types["migraine_certificate_expiry_days"], "gauge");
  EXPECT_EQ(types["migraine_alert_open"], "gauge");
}

// The metrics may be scraped by anyone with network access to the admin port: no record id, no
// patient key, no EHR message and no free text may become a label or appear at all.
TEST(metrics, no_label_or_text_carries_a_record_or_a_patient) {
  metrics m;
  const std::vector<std::string> secrets = {"R-48151", "pk-9f3ac2", "Zebediah", "1961-02-03", "P-7/r2/a3",
                                            "visit-0042.ndjson"};
  for (std::string_view name : {event::received, event::rejected, event::flagged, event::held, event::sent,
                                event::delivered, event::retry_scheduled, event::dead_lettered, event::replayed,
                                event::auth_fault, event::tls_fault, event::alert_opened, event::alert_closed}) {
    auto e = ev(name);
    e.record_id = "R-48151";
    e.record_type = "procedure";
    e.revision = 2;
    e.attempt = 3;
    e.http_status = name == event::retry_scheduled ? 503 : 422;
    e.latency_ms = 250;
    e.correlation_id = "P-7/r2/a3";
    e.ehr_error = "error invalid: Invalid value 'Zebediah' born 1961-02-03";
    e.patient = "pk-9f3ac2";
    e.channel = "inbox";
    e.detail = "visit-0042.ndjson line 3: Zebediah 1961-02-03";
    m.emit(e);
  }
  metrics_snapshot s;
  s.status.records[record_state::dead] = 1;
  s.status.last_error = "HTTP 422: Zebediah";
  s.status.ehr_detail = "HTTP 422";
  s.certificates = {{"ehr.client_cert_file", "/etc/mc/client.pem", 20}};
  s.alerts = {{"dead_letters", "1 dead letter waits: R-48151 Zebediah", t0}};
  const auto text = m.prometheus_text(s, t0);

  const std::set<std::string> allowed = {"state", "channel", "reason", "setting", "alert", "le"};
  std::set<std::string> seen;
  for (const auto& line : lines_of(text)) {
    if (line.empty() || line[0] == '#') continue;
    const auto open = line.find('{');
    if (open == std::string::npos) continue;
    const auto close = line.find('}', open);
    ASSERT_NE(close, std::string::npos) << line;
    std::string labels = line.substr(open + 1, close - open - 1);
    // name="value",name="value": values are simple here, so split on the quotes.
    std::size_t at = 0;
    while (at < labels.size()) {
      const auto eq = labels.find('=', at);
      ASSERT_NE(eq, std::string::npos) << line;
      seen.insert(labels.substr(at, eq - at));
      ASSERT_EQ(labels[eq + 1], '"') << line;
      const auto end = labels.find('"', eq + 2);
      ASSERT_NE(end, std::string::npos) << line;
      at = end + 1;
      if (at < labels.size() && labels[at] == ',') ++at;
    }
  }
  for (const auto& name : seen) EXPECT_TRUE(allowed.contains(name)) << "label " << name;
  EXPECT_TRUE(seen.contains("le"));
  EXPECT_TRUE(seen.contains("channel"));
  for (const auto& secret : secrets) EXPECT_EQ(text.find(secret), std::string::npos) << secret;
}

}  // namespace
