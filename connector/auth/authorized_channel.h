// The EHR channel with an access token: every FHIR request carries `Authorization: Bearer`, the
// one token all connections share (access_tokens). A 401 to a request with a token drops it, gets
// a new one and sends the request once more; a second 401 goes to the sync engine, which pauses
// delivery as an authentication fault. When no token can be had the request is not sent:
// the token endpoint refusing answers kind::credentials_refused (the same pause), a token
// endpoint that is down answers connection_failed (retried like an unreachable EHR).
// Without ehr.auth it passes requests through untouched.
#pragma once

#include <functional>
#include <string>

#include "connector/auth/access_tokens.h"
#include "connector/net/ehr_client.h"

namespace connector {

class authorized_channel final : public ehr_channel {
 public:
  // `tokens` may be null: no authentication beyond the client certificate.
  authorized_channel(ehr_channel& inner, access_tokens* tokens) : inner_(inner), tokens_(tokens) {}

  bool send(ehr_request request, std::function<void(ehr_answer)> done) override;
  // Requests waiting for a token hold a connection each, so the pump never overfills the pool.
  int free_connections() const override { return inner_.free_connections() - waiting_; }

  access_tokens* tokens() const { return tokens_; }
  std::int64_t resent_after_401() const { return resent_after_401_; }

 private:
  void send_with(ehr_request request, const std::string& token, bool may_retry, std::function<void(ehr_answer)> done);
  static ehr_answer not_sent(const token_result& t);

  ehr_channel& inner_;
  access_tokens* tokens_;
  int waiting_ = 0;
  std::int64_t resent_after_401_ = 0;
};

}  // namespace connector
