// POST /v1/records.
#include "connector/intake/ingest_api.h"

#include <malloc.h>

#include <openssl/crypto.h>

#include "connector/failpoint.h"
#include "fhir/json_writer.h"

namespace connector {
namespace {

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

std::string_view media_type(const std::string& content_type) {
  std::string_view t = content_type;
  t = t.substr(0, t.find(';'));
  while (!t.empty() && t.back() == ' ') t.remove_suffix(1);
  return t;
}

bool bearer_matches(const std::string& authorization, const std::string& token) {
  const std::string prefix = "Bearer ";
  if (authorization.size() != prefix.size() + token.size() || authorization.compare(0, prefix.size(), prefix) != 0) {
    return false;
  }
  return CRYPTO_memcmp(authorization.data() + prefix.size(), token.data(), token.size()) == 0;
}

ingest_api::ingest_api(store_worker& store, intake& records, std::optional<std::string> token,
                       std::function<void()> on_stored, int max_records)
    : store_(store), intake_(records), token_(std::move(token)), on_stored_(std::move(on_stored)),
      max_records_(max_records) {}

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
        if (texts.size() > static_cast<std::size_t>(max_records_)) {
          return json_error(413, "the request holds " + std::to_string(texts.size()) + " records; at most " +
                                     std::to_string(max_records_) + " per request (ingest_api.max_records): "
                                     "nothing was stored, send smaller batches");
        }
        const auto results = intake_.take(s, texts, source, "api");
        failpoint("after_ingest_commit");
        return ingest_answer(results);
      },
      [this, respond, body_bytes = body->size()](store_result<http_response> r) {
        if (!r.ok()) {
          // Nothing was stored: the practice system keeps the records and sends them again.
          // A full or unwritable store takes longer to come back than a busy one.
          const bool lasting = r.error->failure == store_error::kind::full ||
                               r.error->failure == store_error::kind::unwritable;
          auto answer = json_error(503, std::string("the records were not stored: ") + r.error->what() +
                                            "; send them again later");
          answer.headers.emplace_back("Retry-After", lasting ? "60" : "5");
          return respond(answer);
        }
        if (r.value->status == 202 || r.value->status == 422) {
          if (on_stored_) on_stored_();
        }
        const bool large = body_bytes > 1024 * 1024;
        respond(std::move(*r.value));
        // A large batch's body, records and answer are freed by now: give the pages back, so one
        // big request does not leave the daemon's resident memory high for good.
        if (large) ::malloc_trim(0);
      });
}

http_response ingest_answer(const std::vector<intake_result>& results) {
  fhir::json_writer out;
  std::size_t rejected = 0;
  out.begin_object();
  out.key("records");
  out.begin_array();
  std::size_t listed = 0, omitted = 0;
  for (const auto& r : results) {
    if (!r.accepted && listed >= answer_max_rejected_listed) {
      ++rejected;
      ++omitted;
      continue;
    }
    out.begin_object();
    out.member("line", static_cast<std::int64_t>(r.line));
    if (!r.record_id.empty()) out.member("record_id", r.record_id);
    if (r.revision > 0) out.member("revision", r.revision);
    out.member("status", status_word(r));
    if (!r.accepted) {
      ++rejected;
      ++listed;
      out.key("problems");
      out.begin_array();
      for (std::size_t i = 0; i < r.problems.size() && i < answer_max_problems_each; ++i) {
        out.begin_object();
        out.member("path", r.problems[i].path);
        out.member("message", r.problems[i].message);
        out.end_object();
      }
      out.end_array();
      if (r.problems.size() > answer_max_problems_each) {
        out.member("problems_not_listed", static_cast<std::int64_t>(r.problems.size() - answer_max_problems_each));
      }
    }
    out.end_object();
  }
  out.end_array();
  out.member("accepted", static_cast<std::int64_t>(results.size() - rejected));
  out.member("rejected", static_cast<std::int64_t>(rejected));
  // Every rejected record is kept in the quarantine with all its problems, listed or not.
  if (omitted > 0) out.member("rejected_not_listed", static_cast<std::int64_t>(omitted));
  out.end_object();
  return {rejected == 0 ? 202 : 422, "application/json", std::string(out.view()), {}};
}

}  // namespace connector
