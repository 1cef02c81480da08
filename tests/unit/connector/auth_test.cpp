// The SMART client assertion (claims with an injected clock and random source, signatures that
// OpenSSL verifies with the public JWK), the token lifecycle against a fake token endpoint, and
// the one resend after a 401.
#include <stdlib.h>

#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "connector/auth/access_tokens.h"
#include "connector/auth/authorized_channel.h"
#include "connector/auth/client_assertion.h"
#include "fhir/json_value.h"
#include "support/test_support.h"

namespace {

namespace fs = std::filesystem;
using namespace connector;

// A fresh folder per test, removed afterwards.
struct scratch_dir {
  fs::path dir;
  scratch_dir() {
    char name[] = "/tmp/migraine-auth-test-XXXXXX";
    dir = ::mkdtemp(name);
  }
  ~scratch_dir() { fs::remove_all(dir); }
  const fs::path& path() const { return dir; }
};

fs::path write_key(const fs::path& dir, const std::string& algorithm, int rsa_bits = 2048) {
  EVP_PKEY* key = algorithm == "RS384" ? EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(rsa_bits))
                                       : EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384");
  const fs::path file = dir / (algorithm + "-" + std::to_string(rsa_bits) + ".pem");
  std::FILE* f = std::fopen(file.c_str(), "wb");
  PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
  std::fclose(f);
  EVP_PKEY_free(key);
  return file;
}

fhir::json_value json_of(const std::string& text) {
  fhir::json_value v;
  EXPECT_EQ(fhir::parse_json_value(text, v, false), "");
  return v;
}

std::string member(const fhir::json_value& v, const char* key) {
  const auto* m = v.find(key);
  return m && m->is_string() ? m->text : "";
}

// Verifies a compact JWS with nothing but the public JWK, as an EHR would.
bool verifies(const std::string& jwt, const std::string& jwk_text) {
  const auto dot1 = jwt.find('.');
  const auto dot2 = jwt.rfind('.');
  const std::string input = jwt.substr(0, dot2);
  std::string sig = base64url_decode(jwt.substr(dot2 + 1));
  const auto jwk = json_of(jwk_text);
  EVP_PKEY* key = nullptr;
  EVP_PKEY_CTX* ctx = nullptr;
  OSSL_PARAM params[4];
  std::string a, b;
  if (member(jwk, "kty") == "RSA") {
    a = base64url_decode(member(jwk, "n"));
    b = base64url_decode(member(jwk, "e"));
    BIGNUM* n = BN_bin2bn(reinterpret_cast<const unsigned char*>(a.data()), static_cast<int>(a.size()), nullptr);
    BIGNUM* e = BN_bin2bn(reinterpret_cast<const unsigned char*>(b.data()), static_cast<int>(b.size()), nullptr);
    std::string nn(static_cast<std::size_t>(BN_num_bytes(n)), '\0'), ee(static_cast<std::size_t>(BN_num_bytes(e)), '\0');
    BN_bn2nativepad(n, reinterpret_cast<unsigned char*>(nn.data()), static_cast<int>(nn.size()));
    BN_bn2nativepad(e, reinterpret_cast<unsigned char*>(ee.data()), static_cast<int>(ee.size()));
    params[0] = OSSL_PARAM_construct_BN(OSSL_PKEY_PARAM_RSA_N, reinterpret_cast<unsigned char*>(nn.data()), nn.size());
    params[1] = OSSL_PARAM_construct_BN(OSSL_PKEY_PARAM_RSA_E, reinterpret_cast<unsigned char*>(ee.data()), ee.size());
    params[2] = OSSL_PARAM_construct_end();
    ctx = EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr);
    EVP_PKEY_fromdata_init(ctx);
    EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params);
    BN_free(n);
    BN_free(e);
  } else {
    std::string point = "\x04" + base64url_decode(member(jwk, "x")) + base64url_decode(member(jwk, "y"));
    char group[] = "P-384";
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size());
    params[2] = OSSL_PARAM_construct_end();
    ctx = EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr);
    EVP_PKEY_fromdata_init(ctx);
    EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params);
    // JWS R || S back to DER for OpenSSL
    if (sig.size() != 96) return false;
    ECDSA_SIG* s = ECDSA_SIG_new();
    ECDSA_SIG_set0(s, BN_bin2bn(reinterpret_cast<const unsigned char*>(sig.data()), 48, nullptr),
                   BN_bin2bn(reinterpret_cast<const unsigned char*>(sig.data()) + 48, 48, nullptr));
    unsigned char* der = nullptr;
    const int len = i2d_ECDSA_SIG(s, &der);
    sig.assign(reinterpret_cast<char*>(der), static_cast<std::size_t>(len));
    OPENSSL_free(der);
    ECDSA_SIG_free(s);
  }
  EVP_PKEY_CTX_free(ctx);
  if (key == nullptr || dot1 == std::string::npos) return false;
  EVP_MD_CTX* md = EVP_MD_CTX_new();
  const bool ok = EVP_DigestVerifyInit(md, nullptr, EVP_sha384(), nullptr, key) == 1 &&
                  EVP_DigestVerify(md, reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                                   reinterpret_cast<const unsigned char*>(input.data()), input.size()) == 1;
  EVP_MD_CTX_free(md);
  EVP_PKEY_free(key);
  return ok;
}

class assertion_test : public ::testing::TestWithParam<const char*> {
 protected:
  scratch_dir dir;
};

TEST_P(assertion_test, carries_the_smart_claims_and_verifies_with_the_published_jwk) {
  const std::string alg = GetParam();
  const auto key = signing_key::load("ehr.auth.private_key_file", write_key(dir.path(), alg).string(), alg);
  const assertion_sources fixed{[] { return std::int64_t{1764590400}; },
                                [](std::size_t n) { return std::string(n, '\x5a'); }};
  const std::string jwt = make_client_assertion(
      key, {"connector-1", "https://ehr.example/oauth2/token", "key-2026", "https://clinic.example/jwks.json"}, fixed);
  const auto dot1 = jwt.find('.');
  const auto dot2 = jwt.rfind('.');
  ASSERT_NE(dot1, dot2);
  const auto header = json_of(base64url_decode(jwt.substr(0, dot1)));
  EXPECT_EQ(member(header, "alg"), alg);
  EXPECT_EQ(member(header, "typ"), "JWT");
  EXPECT_EQ(member(header, "kid"), "key-2026");
  EXPECT_EQ(member(header, "jku"), "https://clinic.example/jwks.json");
  const auto claims = json_of(base64url_decode(jwt.substr(dot1 + 1, dot2 - dot1 - 1)));
  EXPECT_EQ(member(claims, "iss"), "connector-1");
  EXPECT_EQ(member(claims, "sub"), "connector-1");
  EXPECT_EQ(member(claims, "aud"), "https://ehr.example/oauth2/token");
  EXPECT_EQ(claims.find("exp")->number, 1764590400 + 240);  // at most 5 minutes ahead
  EXPECT_EQ(claims.find("iat")->number, 1764590400 - 10);   // a little in the past, for skew
  EXPECT_EQ(member(claims, "jti"), "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a");  // 16 random bytes, hex
  EXPECT_TRUE(verifies(jwt, key.public_jwk("key-2026")));
  std::string tampered = jwt;
  tampered[dot1 + 3] = tampered[dot1 + 3] == 'A' ? 'B' : 'A';
  EXPECT_FALSE(verifies(tampered, key.public_jwk("key-2026")));
}

TEST_P(assertion_test, each_assertion_has_its_own_jti) {
  const std::string alg = GetParam();
  const auto key = signing_key::load("k", write_key(dir.path(), alg).string(), alg);
  const auto sources = system_assertion_sources();
  const assertion_claims c{"c", "https://t.example/token", std::nullopt, std::nullopt};
  auto jti = [&](const std::string& jwt) {
    const auto d1 = jwt.find('.');
    return member(json_of(base64url_decode(jwt.substr(d1 + 1, jwt.rfind('.') - d1 - 1))), "jti");
  };
  EXPECT_NE(jti(make_client_assertion(key, c, sources)), jti(make_client_assertion(key, c, sources)));
}

INSTANTIATE_TEST_SUITE_P(algorithms, assertion_test, ::testing::Values("RS384", "ES384"));

TEST(signing_key, refuses_keys_that_do_not_fit_the_algorithm) {
  scratch_dir dir;
  const auto rsa1024 = write_key(dir.path(), "RS384", 1024).string();
  const auto ec = write_key(dir.path(), "ES384").string();
  const auto rsa = write_key(dir.path(), "RS384").string();
  auto message = [](const std::string& file, const std::string& alg) {
    try {
      signing_key::load("ehr.auth.private_key_file", file, alg);
    } catch (const config_error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_NE(message(rsa1024, "RS384").find("1024 bits; RS384 needs at least 2048"), std::string::npos);
  EXPECT_NE(message(ec, "RS384").find("RS384 needs an RSA key"), std::string::npos);
  EXPECT_NE(message(rsa, "ES384").find("ES384 needs an EC key on the P-384 curve"), std::string::npos);
  EXPECT_NE(message((dir.path() / "missing.pem").string(), "ES384").find("cannot read"), std::string::npos);
  EXPECT_EQ(message(rsa, "RS384"), "accepted");
  EXPECT_EQ(message(ec, "ES384"), "accepted");
}

TEST(jwks, holds_only_public_parts) {
  scratch_dir dir;
  for (const char* alg : {"RS384", "ES384"}) {
    const auto key = signing_key::load("k", write_key(dir.path(), alg).string(), alg);
    const std::string jwks = public_jwks(key, "kid-1");
    const auto v = json_of(jwks);
    ASSERT_TRUE(v.find("keys") && v.find("keys")->items.size() == 1);
    const auto& k = v.find("keys")->items[0];
    EXPECT_EQ(member(k, "kid"), "kid-1");
    EXPECT_EQ(member(k, "alg"), alg);
    EXPECT_EQ(k.find("d"), nullptr) << "a private part in the JWKS";
    EXPECT_EQ(k.find("p"), nullptr);
  }
}

// A token endpoint (and discovery) that answers what the test queues, counting requests.
struct fake_http final : ehr_channel {
  std::deque<ehr_answer> answers;
  std::vector<ehr_request> seen;
  std::vector<std::function<void(ehr_answer)>> pending;  // answered by the test with flush()
  bool hold = false;
  bool send(ehr_request r, std::function<void(ehr_answer)> done) override {
    seen.push_back(r);
    if (hold) {
      pending.push_back(std::move(done));
      return true;
    }
    reply(std::move(done));
    return true;
  }
  void reply(std::function<void(ehr_answer)> done) {
    ehr_answer a = answers.empty() ? ehr_answer{} : answers.front();
    if (!answers.empty()) answers.pop_front();
    done(a);
  }
  void flush() {
    auto p = std::move(pending);
    pending.clear();
    for (auto& d : p) reply(std::move(d));
  }
  int free_connections() const override { return 4; }
};

ehr_answer http(int status, std::string body) {
  ehr_answer a;
  a.outcome.what = attempt_outcome::kind::response;
  a.outcome.http_status = status;
  a.body = std::move(body);
  return a;
}

ehr_answer token_answer(const std::string& token, int expires_in = 100) {
  return http(200, R"({"access_token":")" + token + R"(","token_type":"Bearer","expires_in":)" +
                       std::to_string(expires_in) + R"(,"scope":"system/*.write"})");
}

struct token_fixture : ::testing::Test {
  scratch_dir dir;
  fake_http* endpoint = nullptr;  // owned by the access_tokens
  std::int64_t now = 1000;
  std::vector<std::string> urls;

  std::unique_ptr<access_tokens> make(ehr_auth_config auth) {
    auto factory = [this](const std::string& url) {
      urls.push_back(url);
      auto h = std::make_unique<fake_http>();
      endpoint = h.get();
      endpoint->answers = std::move(queued);
      return h;
    };
    return std::make_unique<access_tokens>(auth, "https://ehr.example/fhir/", factory, [this] { return now; });
  }
  ehr_auth_config secret_auth() {
    std::ofstream(dir.path() / "secret") << "s3cr:et\n";
    ehr_auth_config a;
    a.what = ehr_auth_config::kind::client_secret_basic;
    a.client_id = "clinic";
    a.client_secret_file = (dir.path() / "secret").string();
    a.scope = "system/*.write";
    a.token_url = "https://auth.example/token";
    return a;
  }
  std::deque<ehr_answer> queued;
};

token_result get_now(access_tokens& t) {
  token_result r;
  bool called = false;
  t.get([&](token_result x) {
    r = std::move(x);
    called = true;
  });
  EXPECT_TRUE(called);
  return r;
}

TEST_F(token_fixture, one_request_serves_everyone_waiting_and_the_token_until_80_percent) {
  auto tokens = make(secret_auth());
  get_now(*tokens);  // creates the endpoint; its answer is the default (no answer): unreachable
  endpoint->answers = {token_answer("tok-1", 100)};
  endpoint->hold = true;
  std::vector<token_result> got(3);
  int called = 0;
  for (auto& g : got) tokens->get([&](token_result r) { g = r; ++called; });
  EXPECT_EQ(called, 0);
  EXPECT_EQ(endpoint->seen.size(), 2u) << "one request for three waiting";
  endpoint->flush();
  EXPECT_EQ(called, 3);
  for (const auto& g : got) EXPECT_EQ(g.token, "tok-1");
  const auto& r = endpoint->seen.back();
  EXPECT_EQ(r.body, "grant_type=client_credentials&scope=system%2F%2A.write");
  EXPECT_EQ(r.authorization, "Basic " + base64("clinic:s3cr%3Aet"));
  EXPECT_EQ(r.accept, "application/json");

  endpoint->hold = false;
  now += 79000;
  EXPECT_EQ(get_now(*tokens).token, "tok-1");
  EXPECT_EQ(endpoint->seen.size(), 2u) << "no request before 80% of expires_in";
  now += 2000;  // 81 s of 100: renewed in the background, the old one still serves meanwhile
  endpoint->answers = {token_answer("tok-2", 100)};
  get_now(*tokens);
  EXPECT_EQ(endpoint->seen.size(), 3u);
  EXPECT_EQ(get_now(*tokens).token, "tok-2");
  EXPECT_EQ(tokens->status().requests, 3);
  EXPECT_EQ(tokens->status().granted_scope, "system/*.write");
}

TEST_F(token_fixture, a_dropped_token_is_replaced_and_a_refusal_names_the_error_code_only) {
  queued = {token_answer("tok-1"), http(400, R"({"error":"invalid_client","error_description":"secret 'x'"})")};
  auto tokens = make(secret_auth());
  EXPECT_EQ(get_now(*tokens).token, "tok-1");
  tokens->drop("someone-else");
  EXPECT_EQ(get_now(*tokens).token, "tok-1") << "dropping another token changes nothing";
  tokens->drop("tok-1");
  const auto r = get_now(*tokens);
  EXPECT_EQ(r.what, token_result::kind::refused);
  EXPECT_EQ(r.error, "token endpoint refused: invalid_client (HTTP 400)");
  EXPECT_EQ(tokens->status().last_error, r.error);
  EXPECT_EQ(tokens->status().failures, 1);
  EXPECT_FALSE(tokens->status().has_token);
}

TEST_F(token_fixture, a_reloaded_secret_serves_the_next_request_and_a_bad_file_keeps_the_old_one) {
  queued = {token_answer("tok-1"), token_answer("tok-2"), token_answer("tok-3")};
  auto auth = secret_auth();
  auto tokens = make(auth);
  EXPECT_EQ(get_now(*tokens).token, "tok-1");
  EXPECT_EQ(endpoint->seen.back().authorization, "Basic " + base64("clinic:s3cr%3Aet"));

  std::ofstream(auth.client_secret_file, std::ios::trunc) << "rotated\n";
  EXPECT_TRUE(tokens->reload_credentials());
  EXPECT_EQ(get_now(*tokens).token, "tok-1") << "the token in hand still serves";
  EXPECT_EQ(endpoint->seen.size(), 1u);
  tokens->drop("tok-1");
  EXPECT_EQ(get_now(*tokens).token, "tok-2");
  EXPECT_EQ(endpoint->seen.back().authorization, "Basic " + base64("clinic:rotated"));

  std::ofstream(auth.client_secret_file, std::ios::trunc) << "\n";  // emptied by a botched edit
  EXPECT_THROW(tokens->reload_credentials(), config_error);
  tokens->drop("tok-2");
  EXPECT_EQ(get_now(*tokens).token, "tok-3");
  EXPECT_EQ(endpoint->seen.back().authorization, "Basic " + base64("clinic:rotated")) << "the old secret stays";
}

TEST_F(token_fixture, a_reloaded_key_signs_the_next_assertion) {
  ehr_auth_config a;
  a.what = ehr_auth_config::kind::smart_backend;
  a.client_id = "clinic";
  a.algorithm = "ES384";
  a.key_id = "k1";
  a.token_url = "https://auth.example/token";
  // write_key writes a fresh key to the same file each time: a rotation in place.
  a.private_key_file = write_key(dir.path(), "ES384").string();
  const std::string first_jwk = signing_key::load("k", a.private_key_file, "ES384").public_jwk("k1");
  queued = {token_answer("tok-1"), token_answer("tok-2"), token_answer("tok-3")};
  auto tokens = make(a);
  EXPECT_EQ(get_now(*tokens).token, "tok-1");

  write_key(dir.path(), "ES384");
  const std::string second_jwk = signing_key::load("k", a.private_key_file, "ES384").public_jwk("k1");
  ASSERT_NE(first_jwk, second_jwk);
  EXPECT_TRUE(tokens->reload_credentials());
  tokens->drop("tok-1");
  EXPECT_EQ(get_now(*tokens).token, "tok-2");
  const auto last_assertion = [&] {
    const auto& body = endpoint->seen.back().body;
    const auto at = body.find("client_assertion=");
    if (at == std::string::npos) return std::string();
    const auto rest = body.substr(at + 17);
    return rest.substr(0, rest.find('&'));
  };
  EXPECT_TRUE(verifies(last_assertion(), second_jwk)) << "signed with the new key";
  EXPECT_FALSE(verifies(last_assertion(), first_jwk));

  std::ofstream(a.private_key_file, std::ios::trunc) << "not a key\n";
  EXPECT_THROW(tokens->reload_credentials(), config_error);
  tokens->drop("tok-2");
  EXPECT_EQ(get_now(*tokens).token, "tok-3");
  EXPECT_TRUE(verifies(last_assertion(), second_jwk)) << "the key in use stays";
}

TEST_F(token_fixture, an_endpoint_that_is_down_or_failing_is_unreachable_not_refused) {
  ehr_answer down;
  down.outcome.what = attempt_outcome::kind::connection_failed;
  down.error = "connect: Connection refused";
  queued = {down, http(503, ""), token_answer("tok-1")};
  auto tokens = make(secret_auth());
  EXPECT_EQ(get_now(*tokens).what, token_result::kind::unreachable);
  EXPECT_EQ(get_now(*tokens).error, "token endpoint answered HTTP 503");
  EXPECT_EQ(get_now(*tokens).token, "tok-1");
  EXPECT_EQ(tokens->status().last_error, "");
}

TEST_F(token_fixture, the_token_url_is_discovered_from_smart_configuration_then_the_capability_statement) {
  auto a = secret_auth();
  a.token_url.reset();
  queued = {http(200, R"({"token_endpoint":"https://auth.example/found"})")};
  auto tokens = make(a);
  get_now(*tokens);
  ASSERT_FALSE(urls.empty());
  EXPECT_EQ(urls.front(), "https://ehr.example/fhir");
  EXPECT_EQ(tokens->token_url(), "https://auth.example/found");

  queued = {http(404, "{}"),
            http(200, R"({"resourceType":"CapabilityStatement","rest":[{"security":{"extension":[{"url":)"
                      R"("http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris","extension":)"
                      R"([{"url":"token","valueUri":"https://auth.example/from-metadata"}]}]}}]})")};
  auto second = make(a);
  get_now(*second);
  EXPECT_EQ(second->token_url(), "https://auth.example/from-metadata");

  queued = {http(404, "{}"), http(200, R"({"resourceType":"CapabilityStatement"})")};
  auto third = make(a);
  const auto r = get_now(*third);
  EXPECT_EQ(r.what, token_result::kind::refused);
  EXPECT_NE(r.error.find("set ehr.auth.token_url"), std::string::npos);
}

TEST_F(token_fixture, a_bearer_file_is_read_again_when_it_changes) {
  const auto file = dir.path() / "token";
  std::ofstream(file) << "first-token\n";
  ehr_auth_config a;
  a.what = ehr_auth_config::kind::bearer_file;
  a.token_file = file.string();
  auto tokens = make(a);
  EXPECT_EQ(get_now(*tokens).token, "first-token");
  std::ofstream(file) << "second-token-longer\n";
  EXPECT_EQ(get_now(*tokens).token, "second-token-longer");
  fs::remove(file);
  EXPECT_EQ(get_now(*tokens).what, token_result::kind::refused);
}

TEST_F(token_fixture, a_step_that_throws_still_answers_everyone_waiting) {
  auto tokens = std::make_unique<access_tokens>(
      secret_auth(), "https://ehr.example/fhir",
      [](const std::string&) -> std::unique_ptr<ehr_channel> { throw config_error("ehr.auth.token_url: no host name"); },
      [this] { return now; });
  for (int i = 0; i < 2; ++i) {  // the first failure must not leave a fetch "in progress" for ever
    const auto r = get_now(*tokens);
    EXPECT_EQ(r.what, token_result::kind::refused);
    EXPECT_EQ(r.error, "token request failed: ehr.auth.token_url: no host name");
  }
}

TEST_F(token_fixture, a_failed_renewal_is_retried_half_way_not_on_every_request) {
  queued = {token_answer("tok-1", 100)};
  auto tokens = make(secret_auth());
  EXPECT_EQ(get_now(*tokens).token, "tok-1");
  now += 81000;  // past 80%: renewal; the endpoint answers 429 (no answer queued is "unreachable")
  endpoint->answers = {http(429, "")};
  for (int i = 0; i < 50; ++i) EXPECT_EQ(get_now(*tokens).token, "tok-1");
  EXPECT_EQ(endpoint->seen.size(), 2u) << "one renewal attempt, not one per request";
  now += 9600;  // half-way to expiry: tried again
  endpoint->answers = {token_answer("tok-2", 100)};
  get_now(*tokens);
  EXPECT_EQ(endpoint->seen.size(), 3u);
  EXPECT_EQ(get_now(*tokens).token, "tok-2");
}

TEST(token_answer, expires_in_is_clamped) {
  std::int64_t expires = 0;
  std::string scope;
  read_token_answer(http(200, R"({"access_token":"t","token_type":"bearer","expires_in":0.2})"), expires, scope);
  EXPECT_EQ(expires, 1);
  read_token_answer(http(200, R"({"access_token":"t","token_type":"bearer","expires_in":1e300})"), expires, scope);
  EXPECT_EQ(expires, 86400);
  read_token_answer(http(200, R"({"access_token":"t","token_type":"bearer"})"), expires, scope);
  EXPECT_EQ(expires, 300);
}

TEST(signing_key, an_encrypted_key_is_refused_without_a_prompt) {
  scratch_dir dir;
  EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384");
  const fs::path file = dir.path() / "encrypted.pem";
  std::FILE* f = std::fopen(file.c_str(), "wb");
  char pass[] = "secret";
  PEM_write_PrivateKey(f, key, EVP_aes_256_cbc(), reinterpret_cast<unsigned char*>(pass), 6, nullptr, nullptr);
  std::fclose(f);
  EVP_PKEY_free(key);
  try {
    signing_key::load("ehr.auth.private_key_file", file.string(), "ES384");
    ADD_FAILURE() << "an encrypted key was accepted";
  } catch (const config_error& e) {
    EXPECT_NE(std::string(e.what()).find("no unencrypted PEM private key"), std::string::npos) << e.what();
  }
}

// The channel: bearer header, one resend after a 401, then the 401 goes through.
struct counting_ehr final : ehr_channel {
  std::vector<std::string> authorizations;
  std::deque<int> statuses;
  bool send(ehr_request r, std::function<void(ehr_answer)> done) override {
    authorizations.push_back(r.authorization);
    const int s = statuses.empty() ? 200 : statuses.front();
    if (!statuses.empty()) statuses.pop_front();
    done(http(s, "{}"));
    return true;
  }
  int free_connections() const override { return 2; }
};

TEST_F(token_fixture, a_401_gets_a_new_token_and_one_resend_and_a_second_401_is_passed_on) {
  queued = {token_answer("tok-1"), token_answer("tok-2"), token_answer("tok-3")};
  auto tokens = make(secret_auth());
  counting_ehr ehr;
  authorized_channel channel(ehr, tokens.get());
  ehr.statuses = {401, 200};
  int status = 0;
  channel.send({}, [&](ehr_answer a) { status = a.outcome.http_status; });
  EXPECT_EQ(status, 200);
  EXPECT_EQ(ehr.authorizations, (std::vector<std::string>{"Bearer tok-1", "Bearer tok-2"}));
  ehr.statuses = {401, 401};
  channel.send({}, [&](ehr_answer a) { status = a.outcome.http_status; });
  EXPECT_EQ(status, 401) << "the second 401 is an authentication fault";
  EXPECT_EQ(ehr.authorizations.size(), 4u) << "never more than one resend";
  EXPECT_EQ(channel.resent_after_401(), 2);
}

TEST_F(token_fixture, a_refused_token_request_sends_nothing_and_says_credentials_refused) {
  queued = {http(401, R"({"error":"invalid_client"})")};
  auto tokens = make(secret_auth());
  counting_ehr ehr;
  authorized_channel channel(ehr, tokens.get());
  ehr_answer got;
  channel.send({}, [&](ehr_answer a) { got = a; });
  EXPECT_EQ(got.outcome.what, attempt_outcome::kind::credentials_refused);
  EXPECT_FALSE(got.outcome.request_sent);
  EXPECT_EQ(got.error, "no token: token endpoint refused: invalid_client (HTTP 401)");
  EXPECT_TRUE(ehr.authorizations.empty());
}

TEST(authorized_channel, passes_through_without_auth) {
  counting_ehr ehr;
  authorized_channel channel(ehr, nullptr);
  channel.send({}, [](ehr_answer) {});
  ASSERT_EQ(ehr.authorizations.size(), 1u);
  EXPECT_EQ(ehr.authorizations[0], "");
}

}  // namespace
