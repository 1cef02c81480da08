// The EHR access token: one for every connection, fetched by one request at a time and renewed
// before it runs out (at 80% of expires_in), never per record. Three kinds (ehr.auth.kind):
//   smart_backend        client_credentials with a signed JWT assertion (client_assertion.h)
//   client_secret_basic  client_credentials with the client id and secret in Basic auth
//   bearer_file          a token a gateway or a script keeps in a file, re-read when it changes
// The token endpoint is ehr.auth.token_url, else discovered from <base>/.well-known/smart-
// configuration, else from the CapabilityStatement's oauth-uris extension. Everything runs on
// the event loop's thread. Tokens, secrets and assertions are never logged, counted or stored:
// errors name the step and the endpoint's `error` code only.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "connector/auth/client_assertion.h"
#include "connector/config/config.h"
#include "connector/net/ehr_client.h"

namespace connector {

struct token_result {
  enum class kind { ok, refused, unreachable };
  kind what = kind::ok;
  std::string token;  // ok
  std::string error;  // refused, unreachable: what failed ("token endpoint refused: invalid_client (HTTP 400)")
};

// What status, the admin API and metrics may show: never the token.
struct token_status {
  std::string kind;                         // ehr.auth.kind
  bool has_token = false;
  std::optional<std::int64_t> expires_in_ms;  // remaining life of the current token, if it has one
  std::string granted_scope;
  std::string last_error;                   // empty after a success
  std::int64_t requests = 0;                // to the token endpoint
  std::int64_t failures = 0;
};

// Where requests to the token endpoint and discovery go: the real client, or a fake in tests.
using http_factory = std::function<std::unique_ptr<ehr_channel>(const std::string& base_url)>;

class access_tokens {
 public:
  // `steady_ms` is the monotonic clock. Throws config_error for an unusable key or secret file.
  access_tokens(const ehr_auth_config& auth, std::string fhir_base, http_factory http,
                std::function<std::int64_t()> steady_ms, assertion_sources sources = system_assertion_sources());
  ~access_tokens();

  // A token now when there is a good one; otherwise after one request to the token endpoint,
  // shared by everyone waiting. `done` runs on the loop's thread, exactly once.
  void get(std::function<void(token_result)> done);
  // The EHR refused `token` (401): the next get() asks for a new one.
  void drop(const std::string& token);

  // SIGHUP: reads the private key or the client secret file again for the next token request;
  // the token in hand serves until it is renewed. Throws config_error for an unusable file, and
  // the one in use stays. False when there is nothing to read (a token file is read as it changes).
  bool reload_credentials();

  token_status status() const;
  // The token endpoint's URL once known (configured or discovered).
  const std::string& token_url() const { return token_url_; }

 private:
  void fetch();
  void guarded(const std::function<void()>& step);
  void discover();
  void request_token();
  void finish(token_result result);
  token_result read_token_file();

  ehr_auth_config auth_;
  std::string fhir_base_;
  http_factory http_;
  std::function<std::int64_t()> steady_ms_;
  assertion_sources sources_;
  std::optional<signing_key> key_;
  std::string secret_;
  std::string token_url_;
  std::unique_ptr<ehr_channel> discovery_http_;
  std::unique_ptr<ehr_channel> token_http_;

  std::string token_;
  std::int64_t expires_at_ = 0;  // steady ms
  std::int64_t renew_at_ = 0;    // steady ms: 80% of the way
  bool fetching_ = false;
  std::vector<std::function<void(token_result)>> waiting_;
  std::string granted_scope_;
  std::string last_error_;
  std::int64_t requests_ = 0;
  std::int64_t failures_ = 0;
  // bearer_file: what the file looked like when it was last read
  std::int64_t file_mtime_ns_ = -1;
  std::int64_t file_size_ = -1;
};

// For config-check and tests: the token endpoint's answer read into a result, and expires_in.
token_result read_token_answer(const ehr_answer& answer, std::int64_t& expires_in_s, std::string& scope);

}  // namespace connector
