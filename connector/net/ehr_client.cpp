// The EHR client: Boost.Beast async HTTPS after Beast's async-ssl client example. Every step is a
// do_x / on_x pair with its own timeout, and the first thing each handler checks is its error.
#include "connector/net/ehr_client.h"

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/version.hpp>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <sys/socket.h>

#include <cerrno>
#include <vector>

#include "connector/clock.h"
#include "connector/config/config.h"
#include "connector/failpoint.h"
#include "connector/net/http_dates.h"
#include "connector/net/tls_policy.h"

namespace connector {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

struct endpoint {
  std::string host;       // for the resolver and certificate checks: a name, an IPv4 or a bare IPv6 address
  std::string authority;  // for the Host header, as written: host[:port], [v6][:port]
  std::string port;
  std::string target;  // the base path: transactions are POSTed to it
};

endpoint parse_base_url(const std::string& url, const std::string& setting) {
  const std::string scheme = "https://";
  if (url.rfind(scheme, 0) != 0) throw config_error("setting " + setting + " must start with https://");
  std::string rest = url.substr(scheme.size());
  const auto slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  endpoint e;
  e.target = slash == std::string::npos ? "/" : rest.substr(slash);
  e.authority = authority;
  e.port = "443";
  if (!authority.empty() && authority[0] == '[') {  // an IPv6 literal: https://[::1]:8443/fhir
    const auto close = authority.find(']');
    if (close == std::string::npos) throw config_error("setting " + setting + " has an IPv6 address without its ]");
    e.host = authority.substr(1, close - 1);
    if (close + 1 < authority.size()) {
      if (authority[close + 1] != ':') throw config_error("setting " + setting + ": only :port may follow the IPv6 address");
      e.port = authority.substr(close + 2);
    }
  } else if (const auto colon = authority.rfind(':'); colon != std::string::npos) {
    e.host = authority.substr(0, colon);
    e.port = authority.substr(colon + 1);
  } else {
    e.host = authority;
  }
  if (e.host.empty()) throw config_error("setting " + setting + " has no host name");
  if (e.port.empty() || e.port.find_first_not_of("0123456789") != std::string::npos) {
    throw config_error("setting " + setting + " has a port that is not a number");
  }
  return e;
}

// The SSL ex_data slot where the client-certificate callback notes that the EHR asked for one.
int certificate_requested_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

void configure_tls(ssl::context& ctx, const ehr_settings& s) {
  apply_tls_policy(ctx);
  ctx.set_verify_mode(ssl::verify_peer);
  if (!s.client_cert_file) {
    // Without a certificate of our own, note when the EHR asks for one, so the failure that
    // follows (often a bare reset under TLS 1.3) can be named for what it is.
    SSL_CTX_set_client_cert_cb(ctx.native_handle(), [](SSL* ssl, X509**, EVP_PKEY**) {
      SSL_set_ex_data(ssl, certificate_requested_index(), reinterpret_cast<void*>(1));
      return 0;  // none to give
    });
  }
  boost::system::error_code ec;
  if (s.ca_file) {
    ctx.load_verify_file(*s.ca_file, ec);
    if (ec) throw config_error("setting " + s.section + ".ca_file: cannot load " + *s.ca_file);
  } else {
    ctx.set_default_verify_paths(ec);
    if (ec) throw config_error("cannot load the system's trusted certificates");
  }
  if (s.client_cert_file || s.client_key_file) {
    if (!s.client_cert_file || !s.client_key_file) {
      throw config_error("settings " + s.section + ".client_cert_file and " + s.section + ".client_key_file go together");
    }
    ctx.use_certificate_chain_file(*s.client_cert_file, ec);
    if (ec) throw config_error("setting " + s.section + ".client_cert_file: cannot load " + *s.client_cert_file);
    ctx.use_private_key_file(*s.client_key_file, ssl::context::pem, ec);
    if (ec) throw config_error("setting " + s.section + ".client_key_file: cannot load it or it does not match the certificate");
  }
}

}  // namespace

// One keep-alive TLS connection, one request at a time.
class connection : public std::enable_shared_from_this<connection> {
 public:
  struct counters {
    std::int64_t handshakes = 0;
    std::int64_t fresh_resends = 0;
  };

  // `tls` holds the context new connections are made with; SIGHUP may replace it (reload_tls).
  connection(asio::io_context& io, std::shared_ptr<std::shared_ptr<ssl::context>> tls, const endpoint& ep,
             std::chrono::seconds timeout, counters& counts)
      : io_(io), tls_(std::move(tls)), endpoint_(ep), timeout_(timeout), resolver_(io), resolve_timer_(io), counts_(counts) {}

  bool busy() const { return busy_; }

  void send(ehr_request r, std::function<void(ehr_answer)> done) {
    busy_ = true;
    done_ = std::move(done);
    may_send_ = std::move(r.may_send);
    std::string target = endpoint_.target;
    if (!r.path.empty()) target = (target.back() == '/' ? target.substr(0, target.size() - 1) : target) + r.path;
    http::verb verb = r.body.empty() ? http::verb::get : http::verb::post;
    if (!r.method.empty()) verb = http::string_to_verb(r.method);
    request_ = {verb, target, 11};
    request_.set(http::field::host, endpoint_.authority);
    request_.set(http::field::user_agent, "migraine-connector");
    if (!r.body.empty()) request_.set(http::field::content_type, r.content_type);
    request_.set(http::field::accept, r.accept.empty() ? r.content_type : r.accept);
    if (!r.authorization.empty()) request_.set(http::field::authorization, r.authorization);
    request_.set("X-Request-ID", r.request_id);
    for (const auto& [name, value] : r.headers) request_.set(name, value);
    request_.keep_alive(true);
    request_.body() = std::move(r.body);
    request_.prepare_payload();
    started_ = std::chrono::steady_clock::now();
    retried_ = false;
    sent_any_ = false;
    start();
  }

  // Closes the connection politely when it is not in use.
  void close_idle() {
    if (!busy_) retire();
  }

 private:
  void start() {
    sent_ = false;
    if (stream_ && connected_ && !closed_while_idle()) {
      reused_ = true;
      return do_write();
    }
    abort();
    reused_ = false;
    do_resolve();
  }

  // A kept-alive connection the EHR closed (or wrote anything to) while it sat idle is not worth
  // a request: peek at the socket without blocking before reusing it.
  bool closed_while_idle() {
    char byte = 0;
    const ssize_t n = ::recv(beast::get_lowest_layer(*stream_).socket().native_handle(), &byte, 1,
                             MSG_PEEK | MSG_DONTWAIT);
    if (n >= 0) return true;  // 0: the EHR closed it; > 0: a close_notify or stray bytes
    return errno != EAGAIN && errno != EWOULDBLOCK;  // reset, or another error
  }

  void do_resolve() {
    // Each stream keeps the context it was made with: SIGHUP may have replaced the current one.
    auto context = *tls_;
    stream_ = std::make_unique<beast::ssl_stream<beast::tcp_stream>>(io_, *context);
    stream_tls_ = std::move(context);  // after the old stream is gone
    SSL* ssl = stream_->native_handle();
    // SNI and peer-name verification: never skipped, never with an empty name.
    boost::system::error_code ip_ec;
    asio::ip::make_address(endpoint_.host, ip_ec);
    if (ip_ec) {
      SSL_set_tlsext_host_name(ssl, endpoint_.host.c_str());
      SSL_set1_host(ssl, endpoint_.host.c_str());
      // The name must be in the subjectAltName (RFC 6125, as browsers do): never the subject CN,
      // which OpenSSL would otherwise fall back to when the certificate has no DNS name.
      SSL_set_hostflags(ssl, X509_CHECK_FLAG_NEVER_CHECK_SUBJECT);
    } else {
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), endpoint_.host.c_str());
    }
    // The resolver has no timeout of its own, and cancelling it does not stop a lookup already
    // running: the timer ends the attempt itself, and the lookup's late answer is ignored (each
    // attempt has its number).
    const int attempt = ++resolve_attempt_;
    resolve_timer_.expires_after(timeout_);
    resolve_timer_.async_wait([self = shared_from_this(), attempt](beast::error_code ec) {
      if (ec || attempt != self->resolve_attempt_) return;  // cancelled, or another attempt's timer
      ++self->resolve_attempt_;                             // the lookup's answer, when it comes, is stale
      self->resolver_.cancel();
      self->fail(attempt_outcome::kind::timed_out, "resolving the EHR's host name timed out");
    });
    resolver_.async_resolve(endpoint_.host, endpoint_.port,
                            [self = shared_from_this(), attempt](beast::error_code ec, tcp::resolver::results_type r) {
                              if (attempt != self->resolve_attempt_) return;  // the timer ended it
                              ++self->resolve_attempt_;                       // and the timer, if queued, is stale
                              self->on_resolve(ec, std::move(r));
                            });
  }

  void on_resolve(beast::error_code ec, tcp::resolver::results_type results) {
    resolve_timer_.cancel();
    if (ec) return fail(attempt_outcome::kind::connection_failed, "resolve: " + ec.message());
    beast::get_lowest_layer(*stream_).expires_after(timeout_);
    beast::get_lowest_layer(*stream_).async_connect(
        results, beast::bind_front_handler(&connection::on_connect, shared_from_this()));
  }

  void on_connect(beast::error_code ec, tcp::resolver::results_type::endpoint_type) {
    if (ec == beast::error::timeout) return fail(attempt_outcome::kind::timed_out, "connect timed out");
    if (ec) return fail(attempt_outcome::kind::connection_failed, "connect: " + ec.message());
    beast::get_lowest_layer(*stream_).expires_after(timeout_);
    stream_->async_handshake(ssl::stream_base::client,
                             beast::bind_front_handler(&connection::on_handshake, shared_from_this()));
  }

  void on_handshake(beast::error_code ec) {
    if (ec == beast::error::timeout) return fail(attempt_outcome::kind::timed_out, "TLS handshake timed out");
    if (ec) {
      tls_failure_ = true;
      return fail(attempt_outcome::kind::connection_failed, "TLS handshake: " + tls_reason(ec));
    }
    ++counts_.handshakes;
    connected_ = true;
    do_write();
  }

  void do_write() {
    if (may_send_ && !may_send_()) {
      ehr_answer answer;
      // Withheld; unless an earlier try of this request went out, whose fate is then unknown.
      answer.outcome.what = sent_any_ ? attempt_outcome::kind::connection_failed : attempt_outcome::kind::withheld;
      answer.outcome.request_sent = sent_any_;
      answer.error = "not sent again: the claim's lease ran out";
      return finish(std::move(answer));  // the connection stays usable
    }
    beast::get_lowest_layer(*stream_).expires_after(timeout_);
    http::async_write(*stream_, request_, beast::bind_front_handler(&connection::on_write, shared_from_this()));
  }

  void on_write(beast::error_code ec, std::size_t) {
    if (ec) {
      // The request did not go out whole, so the EHR cannot have processed it. On a reused
      // connection that is the EHR having closed it: send again at once on a fresh one.
      if (reused_ && !retried_) return resend_on_fresh_connection();
      if (ec == beast::error::timeout) return fail(attempt_outcome::kind::timed_out, "sending timed out");
      return fail(attempt_outcome::kind::connection_failed, named_if_certificate_missing("send: " + ec.message()));
    }
    sent_ = sent_any_ = true;  // from here on the EHR may have it: an unanswered request is "possibly delivered"
    failpoint("after_request_written");
    response_ = {};
    parser_.emplace();
    parser_->body_limit(64 * 1024 * 1024);
    beast::get_lowest_layer(*stream_).expires_after(timeout_);
    http::async_read(*stream_, buffer_, *parser_, beast::bind_front_handler(&connection::on_read, shared_from_this()));
  }

  void on_read(beast::error_code ec, std::size_t) {
    if (ec == beast::error::timeout) return fail(attempt_outcome::kind::timed_out, "waiting for the answer timed out");
    if (ec) {
      // Closed before a byte of an answer on a reused connection: most likely the EHR's idle
      // timeout as the request went out. Not sent again here (the EHR may be processing it); the
      // caller retries it as possibly delivered, without taking the EHR for down.
      closed_on_reuse_ = reused_ && !parser_->got_some();
      return fail(attempt_outcome::kind::connection_failed, named_if_certificate_missing("receive: " + ec.message()));
    }
    response_ = parser_->release();
    ehr_answer answer;
    answer.outcome.what = attempt_outcome::kind::response;
    answer.outcome.http_status = static_cast<int>(response_.result_int());
    if (auto it = response_.find(http::field::retry_after); it != response_.end()) {
      answer.outcome.retry_after = parse_retry_after(it->value(), now_ms());
    }
    if (auto it = response_.find(http::field::location); it != response_.end()) answer.location = std::string(it->value());
    if (auto it = response_.find(http::field::etag); it != response_.end()) answer.etag = std::string(it->value());
    answer.body = std::move(response_.body());
    answer.latency = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started_);
    if (!response_.keep_alive()) retire();
    finish(std::move(answer));
  }

  void resend_on_fresh_connection() {
    ++counts_.fresh_resends;
    retried_ = true;
    abort();
    reused_ = false;
    sent_ = false;
    do_resolve();
  }

  std::string tls_reason(const beast::error_code& ec) const {
    const long verify = SSL_get_verify_result(stream_->native_handle());
    if (verify != X509_V_OK) return std::string("certificate not accepted: ") + X509_verify_cert_error_string(verify);
    if (certificate_requested()) return "the EHR requires a client certificate, and none is configured (" + ec.message() + ")";
    return ec.message();
  }

  // Under TLS 1.3 an EHR that wants a client certificate refuses after the handshake, on the first
  // write or read of a fresh connection: name it, rather than report a bare reset.
  std::string named_if_certificate_missing(std::string what) {
    if (reused_ || !certificate_requested()) return what;
    tls_failure_ = true;
    return "TLS: the EHR requires a client certificate, and none is configured (" + what + ")";
  }

  bool certificate_requested() const {
    return stream_ && SSL_get_ex_data(stream_->native_handle(), certificate_requested_index()) != nullptr;
  }

  void fail(attempt_outcome::kind kind, std::string what) {
    abort();
    ehr_answer answer;
    answer.outcome.what = kind;
    answer.outcome.request_sent = sent_any_;
    answer.error = std::move(what);
    answer.tls_failure = tls_failure_;
    answer.closed_on_reuse = closed_on_reuse_;
    closed_on_reuse_ = false;
    answer.latency = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started_);
    tls_failure_ = false;
    finish(std::move(answer));
  }

  // After an error: close at once, no goodbye.
  void abort() {
    connected_ = false;
    if (stream_) {
      beast::error_code ignored;
      beast::get_lowest_layer(*stream_).socket().close(ignored);
    }
    stream_.reset();
    buffer_.clear();
  }

  // A connection we are done with: TLS close_notify (at most 2 s), then close. The stream lives
  // on in the handler, so the next request simply opens a new one.
  void retire() {
    if (!stream_) return;
    std::shared_ptr<beast::ssl_stream<beast::tcp_stream>> s(std::move(stream_));
    connected_ = false;
    buffer_.clear();
    beast::get_lowest_layer(*s).expires_after(std::chrono::seconds(2));
    s->async_shutdown([s](beast::error_code) {
      beast::error_code ignored;
      beast::get_lowest_layer(*s).socket().close(ignored);
    });
  }

  void finish(ehr_answer answer) {
    busy_ = false;
    auto done = std::move(done_);
    may_send_ = nullptr;
    done(std::move(answer));
  }

  asio::io_context& io_;
  std::shared_ptr<std::shared_ptr<ssl::context>> tls_;
  std::shared_ptr<ssl::context> stream_tls_;
  const endpoint& endpoint_;
  std::chrono::seconds timeout_;
  tcp::resolver resolver_;
  asio::steady_timer resolve_timer_;
  counters& counts_;
  std::unique_ptr<beast::ssl_stream<beast::tcp_stream>> stream_;
  beast::flat_buffer buffer_;
  http::request<http::string_body> request_;
  http::response<http::string_body> response_;
  std::optional<http::response_parser<http::string_body>> parser_;
  std::function<void(ehr_answer)> done_;
  std::function<bool()> may_send_;
  bool busy_ = false;
  bool connected_ = false;
  bool reused_ = false;     // this attempt runs on a kept-alive connection
  bool retried_ = false;    // the one fresh-connection resend was used
  bool sent_ = false;       // this attempt wrote the whole request
  bool sent_any_ = false;   // some attempt of this request did
  bool tls_failure_ = false;
  bool closed_on_reuse_ = false;
  int resolve_attempt_ = 0;
  std::chrono::steady_clock::time_point started_;
};

struct ehr_client::impl {
  impl(asio::io_context& io, const ehr_settings& s)
      : settings(s), tls(std::make_shared<std::shared_ptr<ssl::context>>(fresh_tls(s))),
        ep(parse_base_url(s.base_url, s.section + "." + s.url_key)) {
    for (int i = 0; i < std::max(1, s.connections); ++i) {
      connections.push_back(std::make_shared<connection>(io, tls, ep, s.timeout, counts));
    }
  }
  static std::shared_ptr<ssl::context> fresh_tls(const ehr_settings& s) {
    auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
    configure_tls(*ctx, s);
    return ctx;
  }
  ehr_settings settings;
  std::shared_ptr<std::shared_ptr<ssl::context>> tls;  // the current context, shared with the connections
  endpoint ep;
  connection::counters counts;
  std::vector<std::shared_ptr<connection>> connections;
};

ehr_client::ehr_client(asio::io_context& io, const ehr_settings& settings)
    : impl_(std::make_unique<impl>(io, settings)) {}

ehr_client::~ehr_client() = default;

bool ehr_client::send(ehr_request request, std::function<void(ehr_answer)> done) {
  for (auto& c : impl_->connections) {
    if (!c->busy()) {
      c->send(std::move(request), std::move(done));
      return true;
    }
  }
  return false;
}

bool ehr_client::post_transaction(std::string bundle, std::string request_id,
                                  std::function<void(ehr_answer)> done) {
  return send({.path = "", .content_type = "application/fhir+json", .body = std::move(bundle),
               .request_id = std::move(request_id), .may_send = nullptr, .accept = {}, .authorization = {}, .method = {}, .headers = {}},
              std::move(done));
}

int ehr_client::free_connections() const {
  int n = 0;
  for (const auto& c : impl_->connections) n += c->busy() ? 0 : 1;
  return n;
}

void ehr_client::close_idle() {
  for (auto& c : impl_->connections) c->close_idle();
}

void ehr_client::reload_tls() {
  *impl_->tls = impl::fresh_tls(impl_->settings);  // throws, and changes nothing, for a bad file
  close_idle();  // the next request connects with the new files; requests in flight go on
}

std::int64_t ehr_client::handshakes() const { return impl_->counts.handshakes; }
std::int64_t ehr_client::fresh_resends() const { return impl_->counts.fresh_resends; }

}  // namespace connector
