// The connector's TLS policy, for the EHR client and both listeners alike: TLS 1.2 or newer and
// OpenSSL security level 2 at least (RSA and DH of 2048 bits or more, no SHA-1 signatures),
// whatever the system's OpenSSL configuration says (tests/integration/tls_matrix_test.sh).
#pragma once

#include <boost/asio/ssl/context.hpp>
#include <openssl/ssl.h>

namespace connector {

inline void apply_tls_policy(boost::asio::ssl::context& ctx) {
  namespace ssl = boost::asio::ssl;
  ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                  ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_2_VERSION);
  if (SSL_CTX_get_security_level(ctx.native_handle()) < 2) SSL_CTX_set_security_level(ctx.native_handle(), 2);
}

}  // namespace connector
