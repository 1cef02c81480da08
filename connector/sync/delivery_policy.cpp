// The failure policy's rules.
#include "connector/sync/delivery_policy.h"

#include <algorithm>
#include <cmath>

namespace connector {
namespace {

std::string describe(const attempt_outcome& o) {
  switch (o.what) {
    case attempt_outcome::kind::connection_failed: return "connection failed";
    case attempt_outcome::kind::timed_out: return "timed out";
    case attempt_outcome::kind::response: return "HTTP " + std::to_string(o.http_status);
    case attempt_outcome::kind::withheld: return "not sent";
    case attempt_outcome::kind::credentials_refused: return "no token";
  }
  return "failed";
}

}  // namespace

bool interaction_refused(const attempt_outcome& o) {
  if (o.what != attempt_outcome::kind::response) return false;
  return o.http_status == 405 || o.http_status == 501 || (o.http_status >= 400 && o.http_status < 500 && o.not_supported);
}

bool retryable_status(int status) { return status == 408 || status == 429 || status >= 500; }

bool outcome_unknown(const attempt_outcome& o) {
  switch (o.what) {
    case attempt_outcome::kind::response: return o.http_status == 502 || o.http_status == 504;
    case attempt_outcome::kind::connection_failed:
    case attempt_outcome::kind::timed_out: return o.request_sent;
    case attempt_outcome::kind::withheld:
    case attempt_outcome::kind::credentials_refused: return false;
  }
  return true;
}

std::chrono::milliseconds delivery_policy::backoff(int attempts,
                                                   std::optional<std::chrono::seconds> retry_after) const {
  const double exponent = std::min(attempts - 1, 30);
  const double ceiling = std::min(static_cast<double>(settings_.max_delay.count()),
                                  static_cast<double>(settings_.base_delay.count()) * std::pow(2.0, exponent));
  auto delay = std::chrono::milliseconds(static_cast<std::int64_t>(ceiling * random_()));
  if (retry_after) {
    delay = std::max<std::chrono::milliseconds>(delay, std::min<std::chrono::milliseconds>(*retry_after, settings_.max_delay));
  }
  return delay;
}

delivery_verdict delivery_policy::judge(const attempt_outcome& outcome, int attempts) const {
  const bool response = outcome.what == attempt_outcome::kind::response;
  if (outcome.what == attempt_outcome::kind::withheld) {
    return {delivery_decision::released, {}, "not sent: the claim's lease ran out before the request went out"};
  }
  if (response && outcome.http_status >= 200 && outcome.http_status < 300) {
    return {delivery_decision::delivered, {}, "HTTP " + std::to_string(outcome.http_status)};
  }
  if (outcome.what == attempt_outcome::kind::credentials_refused) {
    return {delivery_decision::pause_for_auth, {}, "the EHR's token endpoint refused the connector; delivery paused"};
  }
  if (response && (outcome.http_status == 401 || outcome.http_status == 403)) {
    return {delivery_decision::pause_for_auth, {},
            describe(outcome) + ": the EHR refused the connector's credentials; delivery paused"};
  }
  if (interaction_refused(outcome)) {
    return {delivery_decision::pause_for_write_mode, {},
            describe(outcome) + (outcome.not_supported ? " not-supported" : "") +
                ": the EHR does not take records written this way; delivery paused, nothing dead-lettered"};
  }
  if (!response || retryable_status(outcome.http_status)) {
    // No answer at all: the EHR (or the network) is down, not this record at fault. An outage
    // never turns records into dead letters; the daemon backs off as a whole and the
    // ehr_unreachable and oldest_pending alerts tell a person.
    if (response && attempts >= settings_.max_attempts) {
      return {delivery_decision::dead, {},
              describe(outcome) + " on attempt " + std::to_string(attempts) + " of " +
                  std::to_string(settings_.max_attempts) + ": giving up"};
    }
    return {delivery_decision::retry, backoff(attempts, outcome.retry_after),
            describe(outcome) + ": will retry"};
  }
  return {delivery_decision::dead, {}, describe(outcome) + ": the EHR refused the record"};
}

}  // namespace connector
