// What to do after one attempt to deliver a record: the failure policy, in one place.
//   2xx                                   -> delivered
//   408, 429, 5xx                         -> retry with exponential backoff and full jitter,
//                                            honouring Retry-After, until max_attempts; then dead
//   connection error, timeout             -> retry the same way, without limit: an outage is the
//                                            EHR's, and must not dead-letter the queue
//   withheld (never sent: the claim's lease ran out first) -> released, not an attempt
//   401, 403                              -> pause all delivery: an authentication fault, not the
//                                            record's; burning through the queue would not help
//   credentials refused (never sent: the token endpoint refused the connector) -> the same pause
//   405, 501, or a 4xx whose OperationOutcome says not-supported -> pause all delivery: the EHR
//                                            does not take records written this way (a transaction
//                                            where it takes none, say): not the record's fault
//   400, 404, 409, 412, 422 and other 4xx -> dead letter, with the EHR's OperationOutcome kept
// Pure: the random source is injected so schedules can be asserted exactly.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

namespace connector {

struct attempt_outcome {
  // credentials_refused: not sent, because the EHR's token endpoint refused to issue a token.
  enum class kind { response, connection_failed, timed_out, withheld, credentials_refused };
  kind what = kind::response;
  int http_status = 0;                            // with kind::response
  std::optional<std::chrono::seconds> retry_after;  // the EHR's Retry-After, if any
  // With connection_failed and timed_out: the whole request went out, so the EHR may have
  // processed it. False when it failed before (resolve, connect, handshake, a refused write).
  bool request_sent = false;
  // With kind::response: the EHR's OperationOutcome has an issue with code not-supported.
  bool not_supported = false;
};

// True when nobody can tell whether the EHR committed the request: it went out and no answer came,
// or a gateway answered for an EHR it lost sight of (502, 504). Such a revision is treated as
// possibly at the EHR.
bool outcome_unknown(const attempt_outcome& outcome);

// 408, 429 and 5xx: the server is busy or failing, not refusing; worth asking again later.
bool retryable_status(int status);

enum class delivery_decision { delivered, retry, dead, pause_for_auth, pause_for_write_mode, released };

// 405, 501, or a 4xx that says not-supported: the EHR refuses the interaction, not the record.
bool interaction_refused(const attempt_outcome& outcome);

struct delivery_verdict {
  delivery_decision decision = delivery_decision::delivered;
  std::chrono::milliseconds retry_in{0};  // with retry
  std::string reason;                     // for status and the sync log: no patient data
};

struct retry_settings {
  int max_attempts = 10;
  std::chrono::milliseconds base_delay{1000};
  std::chrono::milliseconds max_delay{std::chrono::minutes(10)};
};

// Uniform in [0, 1): injected so tests can fix it.
using random_unit = std::function<double()>;

class delivery_policy {
 public:
  delivery_policy(retry_settings settings, random_unit random)
      : settings_(settings), random_(std::move(random)) {}

  // `attempts` counts this attempt too (1 for the first).
  delivery_verdict judge(const attempt_outcome& outcome, int attempts) const;

  // Full jitter: uniform in [0, min(max_delay, base * 2^(attempts-1))], never below Retry-After,
  // which is itself capped at max_delay: an EHR asking for a week does not stall the lane a week.
  std::chrono::milliseconds backoff(int attempts, std::optional<std::chrono::seconds> retry_after) const;

  const retry_settings& settings() const { return settings_; }

 private:
  retry_settings settings_;
  random_unit random_;
};

}  // namespace connector
