// HTTPS client for the EHR's FHIR endpoint: a fixed number of keep-alive TLS connections, each
// sending one request at a time, reconnecting after an error. Boost.Beast and OpenSSL stay here.
// TLS 1.2 or newer, the peer verified against the configured CA bundle (system store by default),
// SNI and host-name verification always on, an optional client certificate (mTLS).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/io_context.hpp>

#include "connector/sync/delivery_policy.h"

namespace connector {

struct ehr_settings {
  std::string base_url;  // https://host[:port][/path]
  std::optional<std::string> ca_file;
  std::optional<std::string> client_cert_file;
  std::optional<std::string> client_key_file;
  int connections = 2;
  std::chrono::seconds timeout{30};  // each step: resolve, connect, handshake, write, read
};

struct ehr_answer {
  attempt_outcome outcome;
  std::string body;        // the response body (transaction-response or OperationOutcome)
  std::string error;       // for connection failures and timeouts: what failed, no data
  bool tls_failure = false;  // the TLS handshake failed (certificate, host name, protocol)
};

class ehr_client {
 public:
  // Throws config_error for a bad URL or unreadable certificate files.
  ehr_client(boost::asio::io_context& io, const ehr_settings& settings);
  ~ehr_client();

  // POSTs a transaction Bundle to the base URL. `done` runs on the io_context's thread.
  // Returns false when every connection is busy (try again after a completion).
  bool post_transaction(std::string bundle, std::string request_id, std::function<void(ehr_answer)> done);

  int free_connections() const;
  // TLS handshakes completed so far: with keep-alive this stays at most the connection count.
  std::int64_t handshakes() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace connector
