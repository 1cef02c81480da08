// `jwks`: the public JWK Set of ehr.auth's signing key (smart_backend), what the clinic
// registers with the EHR or hosts at ehr.auth.jwks_url. Only public parts are printed.
#include <cstdio>

#include "connector/auth/client_assertion.h"
#include "connector/cli/commands.h"
#include "connector/config/config.h"

namespace connector {

int run_jwks(const std::vector<std::string>& args) {
  std::vector<std::string> seen;
  const connector_config config = load_config(config_only(args, {}, seen));
  const auto& auth = config.ehr.auth;
  if (auth.what != ehr_auth_config::kind::smart_backend) {
    throw config_error("jwks needs ehr.auth.kind \"smart_backend\" with a private_key_file");
  }
  const signing_key key = signing_key::load("ehr.auth.private_key_file", auth.private_key_file, auth.algorithm);
  const std::string jwks = public_jwks(key, auth.key_id);
  std::fwrite(jwks.data(), 1, jwks.size(), stdout);
  std::fputc('\n', stdout);
  return exit_ok;
}

}  // namespace connector
