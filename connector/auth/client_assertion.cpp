// JWT client assertions signed with OpenSSL (EVP_DigestSign with SHA-384).
#include "connector/auth/client_assertion.h"

#include <cstdio>
#include <cstring>
#include <ctime>
#include <stdexcept>
#include <vector>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "connector/config/config.h"
#include "connector/digest.h"
#include "fhir/json_writer.h"

namespace connector {
namespace {

std::string big_endian(const BIGNUM* n, int width) {
  std::string out(static_cast<std::size_t>(width > 0 ? width : BN_num_bytes(n)), '\0');
  if (width > 0) {
    BN_bn2binpad(n, reinterpret_cast<unsigned char*>(out.data()), width);
  } else {
    BN_bn2bin(n, reinterpret_cast<unsigned char*>(out.data()));
  }
  return out;
}

std::string bn_param(EVP_PKEY* key, const char* name, int width) {
  BIGNUM* n = nullptr;
  if (EVP_PKEY_get_bn_param(key, name, &n) != 1) throw std::runtime_error("the key has no parameter " + std::string(name));
  std::string out = big_endian(n, width);
  BN_free(n);
  return out;
}

}  // namespace

void signing_key::pkey_deleter::operator()(void* p) const { EVP_PKEY_free(static_cast<EVP_PKEY*>(p)); }
signing_key::~signing_key() = default;
signing_key::signing_key(signing_key&&) noexcept = default;
signing_key& signing_key::operator=(signing_key&&) noexcept = default;

signing_key signing_key::load(const std::string& setting, const std::string& pem_file, const std::string& algorithm) {
  std::FILE* f = std::fopen(pem_file.c_str(), "rb");
  if (f == nullptr) throw config_error("setting " + setting + ": cannot read " + pem_file);
  // A passphrase callback that gives none: a daemon has nobody to ask, and must not prompt.
  auto no_passphrase = [](char*, int, int, void*) { return -1; };
  EVP_PKEY* raw = PEM_read_PrivateKey(f, nullptr, no_passphrase, nullptr);
  std::fclose(f);
  if (raw == nullptr) {
    ERR_clear_error();
    throw config_error("setting " + setting + ": " + pem_file +
                       " holds no unencrypted PEM private key (an encrypted key needs a passphrase nobody can type)");
  }
  signing_key k;
  k.key_.reset(raw);
  k.algorithm_ = algorithm;
  const int type = EVP_PKEY_get_base_id(raw);
  if (algorithm == "RS384") {
    if (type != EVP_PKEY_RSA) throw config_error("setting " + setting + ": RS384 needs an RSA key; " + pem_file + " holds another kind");
    if (EVP_PKEY_get_bits(raw) < 2048) {
      throw config_error("setting " + setting + ": the RSA key has " + std::to_string(EVP_PKEY_get_bits(raw)) +
                         " bits; RS384 needs at least 2048");
    }
  } else if (algorithm == "ES384") {
    char group[64] = {0};
    std::size_t len = 0;
    if (type != EVP_PKEY_EC ||
        EVP_PKEY_get_utf8_string_param(raw, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &len) != 1 ||
        std::strcmp(group, "secp384r1") != 0) {
      throw config_error("setting " + setting + ": ES384 needs an EC key on the P-384 curve (secp384r1)");
    }
  } else {
    throw config_error("setting " + setting + ": unknown algorithm " + algorithm);
  }
  return k;
}

std::string signing_key::describe() const {
  auto* k = static_cast<EVP_PKEY*>(key_.get());
  if (algorithm_ == "RS384") return "RSA " + std::to_string(EVP_PKEY_get_bits(k)) + " bits";
  return "EC P-384";
}

std::string signing_key::sign(const std::string& input) const {
  auto* k = static_cast<EVP_PKEY*>(key_.get());
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  std::size_t length = 0;
  std::vector<unsigned char> der;
  const bool ok = ctx != nullptr && EVP_DigestSignInit(ctx, nullptr, EVP_sha384(), nullptr, k) == 1 &&
                  EVP_DigestSign(ctx, nullptr, &length, reinterpret_cast<const unsigned char*>(input.data()), input.size()) == 1 &&
                  (der.resize(length), EVP_DigestSign(ctx, der.data(), &length,
                                                      reinterpret_cast<const unsigned char*>(input.data()), input.size()) == 1);
  EVP_MD_CTX_free(ctx);
  if (!ok) throw std::runtime_error("signing the client assertion failed");
  der.resize(length);
  if (algorithm_ == "RS384") return base64url(std::string(der.begin(), der.end()));
  // ES384: JWS wants R || S, 48 bytes each, where OpenSSL gives a DER ECDSA-Sig-Value.
  const unsigned char* p = der.data();
  ECDSA_SIG* sig = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size()));
  if (sig == nullptr) throw std::runtime_error("signing the client assertion failed");
  const std::string rs = big_endian(ECDSA_SIG_get0_r(sig), 48) + big_endian(ECDSA_SIG_get0_s(sig), 48);
  ECDSA_SIG_free(sig);
  return base64url(rs);
}

std::string signing_key::public_jwk(const std::string& key_id) const {
  auto* k = static_cast<EVP_PKEY*>(key_.get());
  fhir::json_writer w;
  w.begin_object();
  if (algorithm_ == "RS384") {
    w.key("kty");
    w.string("RSA");
    w.key("n");
    w.string(base64url(bn_param(k, OSSL_PKEY_PARAM_RSA_N, 0)));
    w.key("e");
    w.string(base64url(bn_param(k, OSSL_PKEY_PARAM_RSA_E, 0)));
  } else {
    w.key("kty");
    w.string("EC");
    w.key("crv");
    w.string("P-384");
    w.key("x");
    w.string(base64url(bn_param(k, OSSL_PKEY_PARAM_EC_PUB_X, 48)));
    w.key("y");
    w.string(base64url(bn_param(k, OSSL_PKEY_PARAM_EC_PUB_Y, 48)));
  }
  w.key("kid");
  w.string(key_id);
  w.key("alg");
  w.string(algorithm_);
  w.key("use");
  w.string("sig");
  w.key("key_ops");
  w.begin_array();
  w.string("verify");
  w.end_array();
  w.end_object();
  return std::string(w.view());
}

std::string public_jwks(const signing_key& key, const std::string& key_id) {
  return "{\"keys\":[" + key.public_jwk(key_id) + "]}";
}

assertion_sources system_assertion_sources() {
  return {[] { return static_cast<std::int64_t>(std::time(nullptr)); },
          [](std::size_t n) {
            std::string bytes(n, '\0');
            if (RAND_bytes(reinterpret_cast<unsigned char*>(bytes.data()), static_cast<int>(n)) != 1) {
              throw std::runtime_error("no random bytes for the assertion's jti");
            }
            return bytes;
          }};
}

std::string make_client_assertion(const signing_key& key, const assertion_claims& c, const assertion_sources& sources) {
  fhir::json_writer header;
  header.begin_object();
  header.key("alg");
  header.string(key.algorithm());
  header.key("typ");
  header.string("JWT");
  if (c.key_id) {
    header.key("kid");
    header.string(*c.key_id);
  }
  if (c.jwks_url) {
    header.key("jku");
    header.string(*c.jwks_url);
  }
  header.end_object();

  const std::int64_t now = sources.now_seconds();
  fhir::json_writer claims;
  claims.begin_object();
  claims.key("iss");
  claims.string(c.client_id);
  claims.key("sub");
  claims.string(c.client_id);
  claims.key("aud");
  claims.string(c.token_url);
  claims.key("exp");
  claims.integer(now + assertion_lifetime_seconds);
  claims.key("iat");
  claims.integer(now - assertion_iat_skew_seconds);
  claims.key("jti");
  claims.string(hex(sources.random_bytes(16)));
  claims.end_object();

  const std::string input = base64url(std::string(header.view())) + "." + base64url(std::string(claims.view()));
  return input + "." + key.sign(input);
}

std::string base64(const std::string& bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

std::string base64url(const std::string& bytes) {
  std::string out = base64(bytes);
  while (!out.empty() && out.back() == '=') out.pop_back();
  for (char& ch : out) {
    if (ch == '+') ch = '-';
    if (ch == '/') ch = '_';
  }
  return out;
}

std::string base64url_decode(const std::string& text) {
  std::string b64 = text;
  for (char& ch : b64) {
    if (ch == '-') ch = '+';
    else if (ch == '_') ch = '/';
    else if (ch == '+' || ch == '/' || ch == '=') return {};
  }
  const std::size_t pad = (4 - b64.size() % 4) % 4;
  if (pad == 3) return {};
  b64.append(pad, '=');
  std::string out(b64.size() / 4 * 3, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(b64.data()), static_cast<int>(b64.size()));
  if (n < 0) return {};
  out.resize(static_cast<std::size_t>(n) - pad);
  return out;
}

}  // namespace connector
