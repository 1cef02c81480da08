// SMART Backend Services client assertions: a JWT the connector signs with its private key
// (RS384 or ES384) to ask the EHR's token endpoint for an access token, and the public JWKS the
// clinic registers with the EHR. Signing and key handling are OpenSSL's; this file only lays out
// the JOSE header and claims (https://hl7.org/fhir/smart-app-launch/backend-services.html).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace connector {

// A private key checked against its algorithm: RS384 needs RSA of at least 2048 bits, ES384 an
// EC key on P-384. Throws config_error naming `setting` when the file or the key does not fit.
class signing_key {
 public:
  static signing_key load(const std::string& setting, const std::string& pem_file, const std::string& algorithm);
  ~signing_key();
  signing_key(signing_key&&) noexcept;
  signing_key& operator=(signing_key&&) noexcept;

  const std::string& algorithm() const { return algorithm_; }
  // The JWS signature of `signing_input` (base64url(header) "." base64url(claims)), base64url.
  std::string sign(const std::string& signing_input) const;
  // The public key as one JWK (kty, n/e or crv/x/y, kid, alg, use "sig"), JSON text.
  std::string public_jwk(const std::string& key_id) const;
  // The key's bits (RSA) or curve size (EC), for config-check.
  std::string describe() const;

 private:
  signing_key() = default;
  struct pkey_deleter {
    void operator()(void* p) const;
  };
  std::unique_ptr<void, pkey_deleter> key_;  // EVP_PKEY
  std::string algorithm_;
};

struct assertion_claims {
  std::string client_id;  // iss and sub
  std::string token_url;  // aud
  std::optional<std::string> key_id;   // kid
  std::optional<std::string> jwks_url;  // jku
};

// The clock (seconds since the epoch) and the jti's random bytes, injected for tests.
struct assertion_sources {
  std::function<std::int64_t()> now_seconds;
  std::function<std::string(std::size_t)> random_bytes;
};
assertion_sources system_assertion_sources();

// Lifetime of an assertion: well under SMART's five minutes; iat a little in the past, so an
// EHR whose clock runs behind ours still accepts it.
constexpr std::int64_t assertion_lifetime_seconds = 240;
constexpr std::int64_t assertion_iat_skew_seconds = 10;

// header.claims.signature, compact serialization.
std::string make_client_assertion(const signing_key& key, const assertion_claims& claims,
                                  const assertion_sources& sources);

std::string base64url(const std::string& bytes);
std::string base64(const std::string& bytes);  // standard alphabet, padded (HTTP Basic)
std::string base64url_decode(const std::string& text);  // empty on bad input

// The JWK Set of one key: {"keys":[...]}.
std::string public_jwks(const signing_key& key, const std::string& key_id);

}  // namespace connector
