// Bearer tokens on EHR requests, and the one resend after a 401.
#include "connector/auth/authorized_channel.h"

#include <memory>
#include <utility>

namespace connector {

ehr_answer authorized_channel::not_sent(const token_result& t) {
  ehr_answer a;
  a.outcome.what = t.what == token_result::kind::refused ? attempt_outcome::kind::credentials_refused
                                                          : attempt_outcome::kind::connection_failed;
  a.outcome.request_sent = false;
  // "no token: ..." marks every refusal alike, whatever refused (the endpoint, a missing file).
  a.error = t.what == token_result::kind::refused ? "no token: " + t.error : t.error;
  return a;
}

bool authorized_channel::send(ehr_request request, std::function<void(ehr_answer)> done) {
  if (tokens_ == nullptr) return inner_.send(std::move(request), std::move(done));
  if (free_connections() <= 0) return false;
  ++waiting_;
  auto shared = std::make_shared<ehr_request>(std::move(request));
  tokens_->get([this, shared, done = std::move(done)](token_result t) mutable {
    --waiting_;
    if (t.what != token_result::kind::ok) return done(not_sent(t));
    send_with(std::move(*shared), t.token, true, std::move(done));
  });
  return true;
}

void authorized_channel::send_with(ehr_request request, const std::string& token, bool may_retry,
                                   std::function<void(ehr_answer)> done) {
  request.authorization = "Bearer " + token;
  auto again = std::make_shared<ehr_request>(request);  // kept for the one resend after a 401
  auto shared_done = std::make_shared<std::function<void(ehr_answer)>>(std::move(done));
  const bool taken = inner_.send(std::move(request), [this, again, token, may_retry, shared_done](ehr_answer a) {
    const bool refused = a.outcome.what == attempt_outcome::kind::response && a.outcome.http_status == 401;
    if (!refused || !may_retry) return (*shared_done)(std::move(a));
    // The token expired early or was revoked: a new one, and the request once more.
    tokens_->drop(token);
    ++resent_after_401_;
    ++waiting_;
    tokens_->get([this, again, shared_done](token_result t) {
      --waiting_;
      if (t.what != token_result::kind::ok) return (*shared_done)(not_sent(t));
      send_with(std::move(*again), t.token, false, std::move(*shared_done));
    });
  });
  if (!taken) {
    // Every connection went to other requests while this one waited: not sent, back to its lane.
    ehr_answer a;
    a.outcome.what = attempt_outcome::kind::withheld;
    a.error = "not sent: no free connection after getting a token";
    (*shared_done)(std::move(a));
  }
}

}  // namespace connector
