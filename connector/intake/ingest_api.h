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

#include "connector/net/http_server.h"
#include "connector/intake/intake.h"

namespace connector {

class ingest_api {
 public:
  ingest_api(intake& records, std::optional<std::string> token);
  http_response handle(const http_request& request);
  // Before the body is read: a missing or wrong token is refused here (see server_settings).
  std::optional<http_response> screen(const http_request& head) const;

 private:
  intake& intake_;
  std::optional<std::string> token_;
};

// True when `authorization` is "Bearer <token>"; compared in constant time.
bool bearer_matches(const std::string& authorization, const std::string& token);

}  // namespace connector
