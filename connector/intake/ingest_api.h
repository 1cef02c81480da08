// The HTTPS ingest API for the practice system:
//   POST /v1/records   Content-Type: application/json (one record) or application/x-ndjson
//                      (one per line). Authorization: Bearer TOKEN when a token is configured.
// Answers 202 when every record was stored, 422 when any was rejected; either way the body says,
// for each record by line, what became of it and each problem with its field. Accepted records
// are durable when the answer is sent, so the practice system may forget them; a resend is safe
// (a revision already stored is reported as "duplicate").
// 400 malformed request, 401 missing or wrong token, 413 body too large, 415 other content types.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "connector/intake/intake.h"
#include "connector/net/http_server.h"
#include "connector/outbox/store_worker.h"

namespace connector {

// The commit runs on `store` (a worker with its own connection): the thread that accepts requests
// never waits for the disk. `on_stored` runs on the loop after a commit (the daemon wakes delivery).
class ingest_api {
 public:
  ingest_api(store_worker& store, intake& records, std::optional<std::string> token,
             std::function<void()> on_stored = nullptr, int max_records = 1000);
  void handle(const http_request& request, http_respond respond);
  // Before the body is read: a missing or wrong token is refused here (see server_settings).
  std::optional<http_response> screen(const http_request& head) const;
  // A rotated token (SIGHUP), on the io thread that screens requests.
  void set_token(std::string token) { token_ = std::move(token); }

 private:
  store_worker& store_;
  intake& intake_;
  std::optional<std::string> token_;
  std::function<void()> on_stored_;
  int max_records_;
};

// Beyond these the answer summarises instead of listing: a request of junk cannot make an answer
// many times its own size.
inline constexpr std::size_t answer_max_rejected_listed = 100;  // rejected records with their problems
inline constexpr std::size_t answer_max_problems_each = 20;

// The answer to a batch: each record's status by line, 202 when all were stored, 422 otherwise.
http_response ingest_answer(const std::vector<intake_result>& results);

// The media type of a Content-Type header, without its parameters ("application/json; charset=utf-8").
std::string_view media_type(const std::string& content_type);

// True when `authorization` is "Bearer <token>"; compared in constant time.
bool bearer_matches(const std::string& authorization, const std::string& token);

}  // namespace connector
