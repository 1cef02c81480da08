// A small HTTP/1.1 server for the ingest API and the admin server: Boost.Beast, after Beast's
// async server examples. Plain HTTP or TLS (1.2 or newer), optionally requiring a client
// certificate from a given CA; keep-alive; a body limit (413 beyond it); a timeout on every step.
// Handlers run on the io_context's thread, one request at a time per connection, and answer
// through `respond`, from any thread, whenever their work is done: a handler hands blocking work
// (the store) to a worker and returns at once, so the thread goes on serving other requests.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "connector/config/config.h"

namespace connector {

struct http_request {
  std::string method;  // GET, POST, ...
  std::string path;    // without the query, percent-decoded
  std::string query;   // after '?', raw
  std::string authorization;
  std::string content_type;
  std::string body;
  std::string remote;  // the peer's address, for audit ("replayed from 127.0.0.1")
  std::string host;    // the Host header
};

struct http_response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

// Sends the answer; callable once, from any thread.
using http_respond = std::function<void(http_response)>;
using http_handler = std::function<void(const http_request&, http_respond)>;

struct server_settings {
  std::string section;  // "ingest_api", "admin": names the settings in errors
  listen_address listen;
  std::optional<std::string> cert_file;  // with key_file: TLS
  std::optional<std::string> key_file;
  std::optional<std::string> client_ca_file;  // require a client certificate issued by this CA
  std::int64_t body_limit = 1024 * 1024;
  std::chrono::seconds timeout{30};
  // Looks at each request's header before its body is read: a response refuses the request
  // (and the connection closes), nullopt lets it through to the handler.
  std::function<std::optional<http_response>(const http_request& head)> screen;
};

// How a listener's slots are used, for /metrics: written on the io thread, read from any.
struct listener_stats {
  std::atomic<std::int64_t> open{0};     // connections now
  std::atomic<std::int64_t> evicted{0};  // unauthenticated connections closed to make room for a newcomer
  std::atomic<std::int64_t> refused{0};  // newcomers turned away: every slot (or the client's share) proven
  std::atomic<std::int64_t> handshake_failures{0};  // TLS handshakes refused (e.g. unknown client certificate)
};

class http_server {
 public:
  // Binds and starts accepting. Throws config_error when the address cannot be used or the
  // certificate files cannot be loaded.
  http_server(boost::asio::io_context& io, server_settings settings, http_handler handler);
  ~http_server();

  unsigned short port() const;  // the bound port (useful with port 0)
  // Lives as long as its longest holder, so a reader on another thread never outlives it.
  std::shared_ptr<const listener_stats> stats() const;

  // Reads cert_file, key_file and client_ca_file again (SIGHUP): new connections use them, open
  // ones keep theirs. Throws config_error, keeping the files in use, for a bad file; false for a
  // plain-HTTP listener (nothing to reload). On the io_context's thread.
  bool reload_tls();

  struct impl;

 private:
  std::shared_ptr<impl> impl_;
};

// {"error": message} with the status: every JSON error answer of both listeners.
http_response json_error(int status, const std::string& message);

// The value of `name` in a query string (a=1&b=2), percent-decoded; empty when absent.
std::string query_value(const std::string& query, const std::string& name);
// Percent-decodes a path segment or query value ('+' is a space only in queries).
std::string percent_decode(std::string_view text, bool plus_is_space);

}  // namespace connector
