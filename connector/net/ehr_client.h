// HTTPS client for the EHR's FHIR endpoint: a fixed number of keep-alive TLS connections, each
// sending one request at a time, reconnecting after an error. Boost.Beast and OpenSSL stay here.
// TLS 1.2 or newer, the peer verified against the configured CA bundle (system store by default),
// SNI and host-name verification always on, an optional client certificate (mTLS).
//
// Connection reuse done right: before a kept-alive connection is reused it is checked for a
// close (or anything else) the EHR sent while it sat idle; a request whose write fails on a reused
// connection (nothing of it can have been processed) is sent again at once on a fresh connection,
// once, because an EHR closing an idle connection is not an outage. A request written whole and
// then met by a close is not sent again here: the EHR may be processing it, and two concurrent
// conditional creates could both create. Every step has a timeout, name resolution included;
// connections are closed with a TLS close_notify when they are retired.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "connector/sync/delivery_policy.h"

namespace connector {

struct ehr_settings {
  std::string base_url;  // https://host[:port][/path]
  // The configuration section and key these came from, for error messages. The same client posts
  // alerts to the webhook (section "alerts", key "webhook_url").
  std::string section = "ehr";
  std::string url_key = "base_url";
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
  // A kept-alive connection closed as the request went out, before a byte of an answer: most
  // likely the EHR's idle timeout, not an outage (the request may still have been processed).
  bool closed_on_reuse = false;
  std::chrono::milliseconds latency{0};  // from sending the request to the answer (or the failure)
  std::string location;  // the Location header of a create: "Observation/12/_history/1"
  std::string etag;      // the ETag header: W/"1"
};

// One request: by default POST when there is a body, GET otherwise.
struct ehr_request {
  std::string path;  // appended to the base URL's path: "" for transactions, "/metadata"
  std::string content_type;  // of the body, and what is accepted back
  std::string body;
  std::string request_id;  // sent as X-Request-ID: the correlation id of the sync log
  // Asked right before the request is written (after connecting): false withholds it, and the
  // answer says kind::withheld. The sync engine refuses to send once its claim's lease ran out.
  std::function<bool()> may_send;
  std::string accept;         // empty: the content type
  std::string authorization;  // the Authorization header's value, if any (never logged)
  std::string method;         // "GET", "POST", "PUT"; empty: the default above
  std::vector<std::pair<std::string, std::string>> headers;  // If-None-Exist, If-Match, Prefer
};

// GET [base]/metadata: the CapabilityStatement (probes, discovery, the write strategy).
inline ehr_request metadata_request(std::string request_id) {
  return {.path = "/metadata", .content_type = "application/fhir+json", .body = "",
          .request_id = std::move(request_id), .may_send = nullptr, .accept = {}, .authorization = {}, .method = {}, .headers = {}};
}

// What the sync engine needs of the EHR: the real client, or a fake in tests.
class ehr_channel {
 public:
  virtual ~ehr_channel() = default;
  // Sends on a free connection; `done` runs on the io_context's thread, exactly once. Returns
  // false (and never calls `done`) when every connection is busy.
  virtual bool send(ehr_request request, std::function<void(ehr_answer)> done) = 0;
  virtual int free_connections() const = 0;
};

class ehr_client final : public ehr_channel {
 public:
  // Throws config_error for a bad URL or unreadable certificate files.
  ehr_client(boost::asio::io_context& io, const ehr_settings& settings);
  ~ehr_client() override;

  bool send(ehr_request request, std::function<void(ehr_answer)> done) override;
  // POSTs a transaction Bundle to the base URL.
  bool post_transaction(std::string bundle, std::string request_id, std::function<void(ehr_answer)> done);
  int free_connections() const override;

  // Closes the idle connections with a TLS close_notify (at shutdown).
  void close_idle();

  // Reads ca_file, client_cert_file and client_key_file again (SIGHUP: a rotated certificate).
  // New connections use them; idle ones are closed, requests in flight finish on theirs.
  // Throws config_error, keeping the files in use, when a new file is unreadable or mismatched.
  void reload_tls();

  // TLS handshakes completed so far: with keep-alive this stays near the connection count.
  std::int64_t handshakes() const;
  // Requests sent again at once on a fresh connection because a reused one had been closed.
  std::int64_t fresh_resends() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace connector
