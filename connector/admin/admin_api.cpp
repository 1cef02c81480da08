// The admin server's handlers: JSON built with fhir::json_writer, never a record's body.
#include "connector/admin/admin_api.h"

#include <algorithm>

#include "connector/config/certificate_files.h"
#include "connector/intake/ingest_api.h"
#include "connector/observe/status_json.h"
#include "fhir/json_value.h"
#include "fhir/json_writer.h"
#include "fhir/transaction_response.h"

namespace connector {
namespace {

http_response json(int status, const fhir::json_writer& body) { return {status, "application/json", std::string(body.view()), {}}; }

int limit_of(const std::string& query, int fallback, int max) {
  const std::string text = query_value(query, "limit");
  if (text.empty()) return fallback;
  try {
    return std::clamp(std::stoi(text), 1, max);
  } catch (const std::exception&) {
    return fallback;
  }
}

std::optional<record_state> state_named(const std::string& name) {
  for (auto s : {record_state::pending, record_state::in_flight, record_state::retry_scheduled, record_state::delivered,
                 record_state::dead, record_state::superseded, record_state::held}) {
    if (to_string(s) == name) return s;
  }
  return std::nullopt;
}

void write_summary(fhir::json_writer& out, const record_summary& r) {
  out.begin_object();
  out.member("record_id", r.record_id);
  out.member("record_type", r.record_type);
  out.member("revision", r.revision);
  out.member("state", to_string(r.state));
  out.member("attempts", r.attempts);
  out.member("last_error", r.last_error);
  // Dead letters keep the EHR's OperationOutcome, which may quote the record: only its summary
  // leaves the store. Delivered records keep what the EHR made of each entry (our own JSON array).
  if (r.state == record_state::dead) {
    out.member("ehr_summary", fhir::summarize_operation_outcome(r.ehr_response));
  } else if (r.state == record_state::delivered && !r.ehr_response.empty() && r.ehr_response.front() == '[') {
    out.key("ehr_result");
    out.raw(r.ehr_response);
  }
  out.member("patient", r.patient_key);
  if (r.maybe_at_ehr) out.member_bool("maybe_at_ehr", true);  // sent, no answer: possibly delivered
  out.member("received_at", utc_text(r.received_at_ms));
  out.member("updated_at", utc_text(r.updated_at_ms));
  out.end_object();
}

void write_events(fhir::json_writer& out, const std::vector<std::string>& lines) {
  out.key("events");
  out.begin_array();
  for (const auto& line : lines) out.raw(line);  // each line is one JSON object the log wrote
  out.end_array();
}

}  // namespace

readiness check_readiness(outbox& store, const outbox_status& status,
                          const std::vector<certificate_days>& certificates, std::int64_t now_ms,
                          const delivery_health& delivery) {
  readiness r;
  const auto store_problem = store.write_problem();
  r.store_writable = !delivery.store_degraded && !store_problem;
  r.ehr_reached_recently = status.ehr_reached && status.ehr_last_contact_ms &&
                           now_ms - *status.ehr_last_contact_ms <= ehr_recent_ms;
  r.certificates_valid = std::all_of(certificates.begin(), certificates.end(),
                                     [](const certificate_days& c) { return c.days_left && *c.days_left >= 0; });
  if (!r.store_writable) {
    r.detail = store_problem ? *store_problem : delivery.store_problem;
  } else if (!r.ehr_reached_recently) {
    r.detail = status.ehr_last_contact_ms ? "the EHR was not reached in the last 5 minutes: " + status.ehr_detail
                                          : "the EHR has not been contacted yet";
  } else if (!r.certificates_valid) {
    for (const auto& c : certificates) {
      if (!c.days_left || *c.days_left < 0) {
        r.detail = c.setting + " " + c.file + (c.days_left ? " has expired" : " cannot be read");
        break;
      }
    }
  }
  return r;
}

// The Host header without its port: "127.0.0.1", "localhost", "[::1]".
std::string host_name(const std::string& host) {
  if (!host.empty() && host[0] == '[') return host.substr(0, host.find(']') + 1);
  return host.substr(0, host.rfind(':') == std::string::npos ? host.size() : host.rfind(':'));
}

std::optional<http_response> admin_api::screen(const http_request& head) const {
  const auto& listen = c_.config.admin.listen;
  if (listen && listen->loopback() && !c_.config.admin.cert_file) {
    const std::string name = host_name(head.host);
    const bool loopback_name = name == "localhost" || name == "[::1]" || name == listen->host ||
                               (name.rfind("127.", 0) == 0 && name.find_first_not_of("0123456789.") == std::string::npos);
    if (!loopback_name) return json_error(403, "Host not allowed: use http://127.0.0.1 or http://localhost");
  }
  const std::string& path = head.path;
  const bool open_route = path == "/" || path == "/healthz" || path == "/readyz";
  if (!open_route && c_.token && !bearer_matches(head.authorization, *c_.token)) {
    auto r = json_error(401, "missing or wrong bearer token (admin.token_file)");
    r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"migraine-connector admin\"");
    return r;
  }
  return std::nullopt;
}

namespace {
http_response store_unavailable(const store_error& e) {
  auto r = json_error(503, std::string("the store could not answer: ") + e.what());
  r.headers.emplace_back("Retry-After", "5");
  return r;
}
}  // namespace

void admin_api::handle(const http_request& request, http_respond respond) {
  if (auto refusal = screen(request)) return respond(*refusal);
  const std::string& path = request.path;
  if (request.method == "GET" && path == "/") {
    return respond({200, "text/html; charset=utf-8", status_page_html,
                    {{"Content-Security-Policy",
                      "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; "
                      "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"}}});
  }
  if (request.method == "GET" && path == "/healthz") return respond({200, "text/plain; charset=utf-8", "ok\n", {}});
  if (path != "/readyz" && path != "/metrics" && path.rfind("/api/", 0) != 0) return respond(json_error(404, "not found"));
  if (request.method == "POST") {
    const std::string prefix = "/api/records/", suffix = "/replay";
    if (!(path.size() > prefix.size() + suffix.size() && path.rfind(prefix, 0) == 0 &&
          path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0)) {
      return respond(json_error(404, "not found"));
    }
    std::string_view type = request.content_type;
    type = type.substr(0, type.find(';'));
    if (type != "application/json") return respond(json_error(415, "Content-Type must be application/json"));
    fhir::json_value body;
    std::string reason;
    if (fhir::parse_json_value(request.body, body, false).empty() && body.is_object()) {
      if (const auto* r = body.find("reason"); r != nullptr && r->is_string()) reason = r->text;
    }
    if (reason.find_first_not_of(" \t\r\n") == std::string::npos) {
      return respond(json_error(400, "say why in {\"reason\": \"...\"}: it is kept with the replay"));
    }
    const std::string record_id = path.substr(prefix.size(), path.size() - prefix.size() - suffix.size());
    const std::string who = "admin API" + (request.remote.empty() ? "" : " from " + request.remote);
    return c_.writer.run([this, record_id, reason, who](outbox& s) { return replay(s, record_id, reason, who); },
                         [respond](store_result<http_response> r) {
                           respond(r.ok() ? std::move(*r.value) : store_unavailable(*r.error));
                         });
  }
  if (request.method != "GET") return respond(json_error(405, "method not allowed"));
  // The charts' series is in memory: it answers while the store is busy, as /healthz does.
  if (path == "/api/series") return respond(series(request.query));
  c_.reader.run([this, request](outbox& s) { return read_route(s, request); },
                [respond](store_result<http_response> r) {
                  respond(r.ok() ? std::move(*r.value) : store_unavailable(*r.error));
                });
}

http_response admin_api::read_route(outbox& store, const http_request& request) {
  const std::string& path = request.path;
  if (path == "/readyz") return ready(store);
  if (path == "/metrics") return metrics_text(store);
  if (path == "/api/status") return status(store);
  if (path == "/api/records") return records(store, request.query);
  if (path.rfind("/api/records/", 0) == 0) return record(store, path.substr(13));
  if (path == "/api/events") return events(request.query);
  if (path == "/api/quarantine") return quarantine(store, request.query);
  return json_error(404, "not found");
}

http_response admin_api::ready(outbox& store) {
  const std::int64_t now = c_.now();
  const auto status = store.status(now);
  const auto r = check_readiness(store, status, configured_certificates(c_.config, now / 1000), now,
                                 c_.delivery ? c_.delivery() : delivery_health{});
  fhir::json_writer out;
  out.begin_object();
  out.member_bool("ready", r.ready());
  out.key("checks");
  out.begin_object();
  out.member_bool("store_writable", r.store_writable);
  out.member_bool("ehr_reached_recently", r.ehr_reached_recently);
  out.member_bool("certificates_valid", r.certificates_valid);
  out.end_object();
  if (!r.ready()) out.member("detail", r.detail);
  out.end_object();
  return json(r.ready() ? 200 : 503, out);
}

http_response admin_api::metrics_text(outbox& store) {
  const std::int64_t now = c_.now();
  metrics_snapshot s;
  s.status = store.status(now);
  s.self_owner = c_.owner;
  s.certificates = configured_certificates(c_.config, now / 1000);
  s.alerts = store.open_alerts();
  if (c_.log != nullptr) {
    s.log_failed_writes = c_.log->failed_writes();
    s.log_writable = !c_.log->failing();
  }
  const delivery_health health = c_.delivery ? c_.delivery() : delivery_health{};
  s.store_degraded = health.store_degraded;
  if (health.auth) {
    s.token_requests = health.auth->requests;
    s.token_failures = health.auth->failures;
  }
  if (c_.listeners) s.listeners = c_.listeners();
  s.ready = check_readiness(store, s.status, s.certificates, now, health).ready();
  return {200, "text/plain; version=0.0.4; charset=utf-8", c_.counters.prometheus_text(s, now), {}};
}

http_response admin_api::status(outbox& store) {
  const std::int64_t now = c_.now();
  const auto s = store.status(now);
  const delivery_health health = c_.delivery ? c_.delivery() : delivery_health{};
  fhir::json_writer out;
  out.begin_object();
  out.member("version", c_.version);
  out.member("started_at", utc_text(c_.started_at_ms));
  write_queue_members(out, s, c_.owner);
  out.key("store");
  out.begin_object();
  out.member_bool("degraded", health.store_degraded);
  if (health.store_degraded) out.member("problem", health.store_problem);
  out.end_object();
  out.member_number("delivered_per_minute", c_.counters.delivered_per_minute(now));
  out.key("auth");
  if (health.auth) {
    const auto& a = *health.auth;
    out.begin_object();
    out.member("kind", a.kind);
    out.member_bool("has_token", a.has_token);
    if (a.expires_in_ms) {
      const std::int64_t aged = *a.expires_in_ms - (steady_ms() - health.auth_published_steady_ms);
      out.member("token_expires_in_s", std::max<std::int64_t>(0, aged) / 1000);
    }
    if (!a.granted_scope.empty()) out.member("granted_scope", a.granted_scope);
    out.member("last_error", a.last_error);
    out.member("token_requests", a.requests);
    out.member("token_failures", a.failures);
    out.end_object();
  } else {
    out.raw("null");
  }
  out.key("write");
  if (health.write || !health.capabilities_error.empty()) {
    out.begin_object();
    out.member("configured", std::string(name_of(health.write ? health.write->configured : write_mode::automatic)));
    if (health.write) {
      const auto& w = *health.write;
      out.member("mode", std::string(name_of(w.mode)));
      out.member("why", w.why);
      out.member_bool("deliverable", w.deliverable);
      if (!w.deliverable) out.member("not_deliverable_because", w.not_deliverable_because);
      if (!health.write_software.empty()) out.member("ehr_software", health.write_software);
      out.key("types");
      out.begin_array();
      for (const auto& t : w.types) {
        out.begin_object();
        out.member("type", t.type);
        out.member_bool("sent", t.sent);
        out.member("how", t.how);
        if (!t.why.empty()) out.member("why", t.why);
        out.end_object();
      }
      out.end_array();
    }
    if (health.capabilities_read_at_ms > 0) out.member("capabilities_read_at", utc_text(health.capabilities_read_at_ms));
    if (!health.capabilities_error.empty()) out.member("capabilities_error", health.capabilities_error);
    out.end_object();
  } else {
    out.raw("null");
  }
  out.key("ehr");
  if (s.ehr_last_contact_ms) {
    out.begin_object();
    out.member("base_url", c_.config.ehr.base_url);
    out.member_bool("reached", s.ehr_reached);
    out.member("seconds_ago", (now - *s.ehr_last_contact_ms) / 1000);
    out.member("detail", s.ehr_detail);
    if (s.ehr_unreachable_since_ms) out.member("unreachable_since", utc_text(*s.ehr_unreachable_since_ms));
    out.end_object();
  } else {
    out.raw("null");
  }
  out.key("certificates");
  out.begin_array();
  for (const auto& c : configured_certificates(c_.config, now / 1000)) {
    out.begin_object();
    out.member("setting", c.setting);
    out.member("file", c.file);
    out.key("days_left");
    c.days_left ? out.integer(*c.days_left) : out.raw("null");
    out.end_object();
  }
  out.end_array();
  out.key("alerts");
  out.begin_array();
  for (const auto& a : store.open_alerts()) {
    out.begin_object();
    out.member("alert", a.key);
    out.member("since", utc_text(a.opened_at_ms));
    out.member("detail", a.detail);
    out.end_object();
  }
  out.end_array();
  out.key("intake");
  out.begin_object();
  out.key("inbox");
  c_.config.inbox.dir.empty() ? out.raw("null") : out.string(c_.config.inbox.dir);
  out.key("ingest_api");
  c_.ingest_api_address.empty() ? out.raw("null") : out.string(c_.ingest_api_address);
  out.end_object();
  out.end_object();
  return json(200, out);
}

http_response admin_api::records(outbox& store, const std::string& query) {
  const std::string name = query_value(query, "state");
  const auto state = state_named(name.empty() ? "dead" : name);
  if (!state) return json_error(400, "unknown state; one of pending, in_flight, retry_scheduled, delivered, dead, superseded, held");
  fhir::json_writer out;
  out.begin_object();
  out.member("state", to_string(*state));
  out.key("records");
  out.begin_array();
  for (const auto& r : store.records_in_state(*state, limit_of(query, 100, 1000))) write_summary(out, r);
  out.end_array();
  out.end_object();
  return json(200, out);
}

http_response admin_api::record(outbox& store, const std::string& record_id) {
  const auto revisions = store.record_history(record_id);
  if (revisions.empty()) return json_error(404, "no record " + record_id);
  fhir::json_writer out;
  out.begin_object();
  out.member("record_id", record_id);
  out.key("revisions");
  out.begin_array();
  for (const auto& r : revisions) write_summary(out, r);
  out.end_array();
  write_events(out, recent_event_lines(c_.config.log, 200,
                                       record_id));
  out.end_object();
  return json(200, out);
}

http_response admin_api::events(const std::string& query) {
  fhir::json_writer out;
  out.begin_object();
  write_events(out, recent_event_lines(c_.config.log,
                                       static_cast<std::size_t>(limit_of(query, 50, 1000)), query_value(query, "record")));
  out.end_object();
  return json(200, out);
}

http_response admin_api::quarantine(outbox& store, const std::string& query) {
  fhir::json_writer out;
  out.begin_object();
  out.key("records");
  out.begin_array();
  for (const auto& q : store.quarantined(limit_of(query, 100, 1000))) {
    out.begin_object();
    out.member("id", q.id);
    out.member("source", q.source);
    out.member("record_id", q.record_id);
    out.key("problems");
    out.raw(q.problems_json);
    out.member("received_at", utc_text(q.received_at_ms));
    out.end_object();
  }
  out.end_array();
  out.end_object();
  return json(200, out);
}

http_response admin_api::series(const std::string& query) const {
  std::int64_t width_s = 3600;
  if (const std::string text = query_value(query, "width"); !text.empty()) {
    try {
      width_s = std::stoll(text);
    } catch (const std::exception&) {
      width_s = 0;
    }
  }
  if (width_s <= 0 || width_s > delivery_series::span_ms / 1000 || !delivery_series::valid_width(width_s * 1000)) {
    return json_error(400, "width: seconds, a multiple of 300 that divides 86400 (300, 900, 1800, 3600...)");
  }
  const std::int64_t now = c_.now();
  return {200, "application/json", series_json(c_.counters.series().view(now, width_s * 1000), now, c_.started_at_ms),
          {}};
}

http_response admin_api::replay(outbox& store, const std::string& record_id, const std::string& reason,
                                const std::string& who) {
  const std::int64_t now = c_.now();
  const auto letters = store.replay(record_id, reason, who, false, now);
  if (letters.empty()) return json_error(404, "no dead letter for record " + record_id);
  fhir::json_writer out;
  out.begin_object();
  out.key("replayed");
  out.begin_array();
  for (const auto& l : letters) {
    out.begin_object();
    out.member("record_id", l.record_id);
    out.member("revision", l.revision);
    out.member("was", l.last_error);
    out.end_object();
    sync_event e;
    e.time_ms = now;
    e.name = event::replayed;
    e.record_id = l.record_id;
    e.revision = l.revision;
    // The reason is typed by a person and may name the patient: it stays in the store's replay
    // audit (replays table), not in the log.
    e.detail = "by " + who + " (was: " + l.last_error + ")";
    c_.events.emit(e);
  }
  out.end_array();
  out.end_object();
  return json(200, out);
}

}  // namespace connector
