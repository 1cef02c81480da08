// POST /v1/records.
#include "connector/intake/ingest_api.h"

#include <openssl/crypto.h>

#include "connector/failpoint.h"
#include "fhir/json_writer.h"

namespace connector {
namespace {

std::string_view media_type(const std::string& content_type) {
  std::string_view t = content_type;
  t = t.substr(0, t.find(';'));
  while (!t.empty() && t.back() == ' ') t.remove_suffix(1);
  return t;
}

std::string_view status_word(const intake_result& r) {
  if (!r.accepted) return "rejected";
  switch (r.stored) {
    case enqueue_result::accepted: return "accepted";
    case enqueue_result::accepted_superseding: return "accepted_superseding";
    case enqueue_result::duplicate: return "duplicate";
    case enqueue_result::stale: return "stale";
    case enqueue_result::other_patient: return "rejected";
  }
  return "accepted";
}

}  // namespace

bool bearer_matches(const std::string& authorization, const std::string& token) {
  const std::string prefix = "Bearer ";
  if (authorization.size() != prefix.size() + token.size() || authorization.compare(0, prefix.size(), prefix) != 0) {
    return false;
  }
  return CRYPTO_memcmp(authorization.data() + prefix.size(), token.data(), token.size()) == 0;
}

ingest_api::ingest_api(store_worker& store, intake& records, std::optional<std::string> token,
                       std::function<void()> on_stored)
    : store_(store), intake_(records), token_(std::move(token)), on_stored_(std::move(on_stored)) {}

std::optional<http_response> ingest_api::screen(const http_request& head) const {
  if (token_ && !bearer_matches(head.authorization, *token_)) {
    auto r = json_error(401, "missing or wrong bearer token");
    r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"migraine-connector\"");
    return r;
  }
  return std::nullopt;
}

void ingest_api::handle(const http_request& request, http_respond respond) {
  if (auto refusal = screen(request)) return respond(*refusal);
  if (request.path != "/v1/records") return respond(json_error(404, "not found: records go to POST /v1/records"));
  if (request.method != "POST") {
    auto r = json_error(405, "only POST is allowed here");
    r.headers.emplace_back("Allow", "POST");
    return respond(r);
  }
  const auto type = media_type(request.content_type);
  const bool ndjson = type == "application/x-ndjson" || type == "application/ndjson";
  if (!ndjson && type != "application/json") {
    return respond(json_error(415, "Content-Type must be application/json (one record) or application/x-ndjson"));
  }
  if (request.body.find_first_not_of(" \t\r\n") == std::string::npos) {
    return respond(json_error(400, "the request has no record"));
  }
  const std::string source = "ingest API" + (request.remote.empty() ? "" : " from " + request.remote);
  // The body moves to the worker; the records are split, read and committed there.
  auto body = std::make_shared<std::string>(request.body);
  store_.run(
      [this, body, ndjson, source](outbox& s) {
        const auto texts = split_records(*body, ndjson);
        if (texts.empty()) return json_error(400, "the request has no record");
        const auto results = intake_.take(s, texts, source, "api");
        failpoint("after_ingest_commit");
        return ingest_answer(results);
      },
      [this, respond](store_result<http_response> r) {
        if (!r.ok()) {
          // Nothing was stored: the practice system keeps the records and sends them again.
          auto answer = json_error(503, std::string("the records were not stored: ") + r.error->what() +
                                            "; send them again");
          answer.headers.emplace_back("Retry-After", "5");
          return respond(answer);
        }
        if (r.value->status == 202 || r.value->status == 422) {
          if (on_stored_) on_stored_();
        }
        respond(std::move(*r.value));
      });
}

http_response ingest_answer(const std::vector<intake_result>& results) {
  fhir::json_writer out;
  std::size_t rejected = 0;
  out.begin_object();
  out.key("records");
  out.begin_array();
  for (const auto& r : results) {
    out.begin_object();
    out.member("line", static_cast<std::int64_t>(r.line));
    if (!r.record_id.empty()) out.member("record_id", r.record_id);
    if (r.revision > 0) out.member("revision", r.revision);
    out.member("status", status_word(r));
    if (!r.accepted) {
      ++rejected;
      out.key("problems");
      out.begin_array();
      for (const auto& p : r.problems) {
        out.begin_object();
        out.member("path", p.path);
        out.member("message", p.message);
        out.end_object();
      }
      out.end_array();
    }
    out.end_object();
  }
  out.end_array();
  out.member("accepted", static_cast<std::int64_t>(results.size() - rejected));
  out.member("rejected", static_cast<std::int64_t>(rejected));
  out.end_object();
  return {rejected == 0 ? 202 : 422, "application/json", std::string(out.view()), {}};
}

}  // namespace connector
