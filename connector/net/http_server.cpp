// The listener and one session per connection, for plain TCP and TLS streams alike.
#include "connector/net/http_server.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <openssl/ssl.h>

#include <atomic>
#include <cstdio>
#include <list>
#include <map>

#include "connector/net/tls_policy.h"
#include "fhir/json_writer.h"

namespace connector {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

namespace {

// Slots, per listener: bound descriptors and buffered bodies. No one client address may hold more
// than an eighth of them, and a newcomer takes the slot of the oldest connection that has not yet
// had a request through the screen (authentication), so a flood of idle or slow unauthenticated
// connections cannot keep anyone out.
constexpr std::size_t max_sessions = 512;
constexpr int max_sessions_per_client = 64;
// Short timeouts before a request has shown who sends it; the body gets its own (see on_header).
constexpr std::chrono::seconds handshake_timeout{5};  // TCP accepted -> TLS handshake done
constexpr std::chrono::seconds header_timeout{10};    // connected or answered -> a whole request header

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

http::response<http::string_body> to_beast(const http_response& r, unsigned version, bool keep_alive) {
  http::response<http::string_body> res{static_cast<http::status>(r.status), version};
  res.set(http::field::server, "migraine-connector");
  res.set(http::field::content_type, r.content_type);
  res.set(http::field::cache_control, "no-store");
  res.set("X-Content-Type-Options", "nosniff");
  for (const auto& [name, value] : r.headers) res.set(name, value);
  res.keep_alive(keep_alive);
  res.body() = r.body;
  res.prepare_payload();
  return res;
}

// The listener's TLS context from its files. Throws config_error naming the setting.
std::shared_ptr<ssl::context> server_tls(const server_settings& s) {
  auto made = std::make_shared<ssl::context>(ssl::context::tls_server);
  auto& ctx = *made;
  apply_tls_policy(ctx);
  ctx.set_options(ssl::context::single_dh_use);
  beast::error_code ec;
  ctx.use_certificate_chain_file(*s.cert_file, ec);
  if (ec) throw config_error("setting " + s.section + ".cert_file: cannot load " + *s.cert_file);
  ctx.use_private_key_file(*s.key_file, ssl::context::pem, ec);
  if (ec) throw config_error("setting " + s.section + ".key_file: cannot load it or it does not match the certificate");
  if (s.client_ca_file) {
    ctx.load_verify_file(*s.client_ca_file, ec);
    if (ec) throw config_error("setting " + s.section + ".client_ca_file: cannot load " + *s.client_ca_file);
    ctx.set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
  }
  return made;
}

}  // namespace

http_response json_error(int status, const std::string& message) {
  fhir::json_writer out;
  out.begin_object();
  out.member("error", message);
  out.end_object();
  return {status, "application/json", std::string(out.view()), {}};
}

std::string percent_decode(std::string_view text, bool plus_is_space) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size() && hex_value(text[i + 1]) >= 0 &&
        hex_value(text[i + 2]) >= 0) {
      out += static_cast<char>(hex_value(text[i + 1]) * 16 + hex_value(text[i + 2]));
      i += 2;
    } else if (text[i] == '+' && plus_is_space) {
      out += ' ';
    } else {
      out += text[i];
    }
  }
  return out;
}

std::string query_value(const std::string& query, const std::string& name) {
  std::size_t start = 0;
  while (start <= query.size()) {
    std::size_t end = query.find('&', start);
    if (end == std::string::npos) end = query.size();
    const std::string_view pair(query.data() + start, end - start);
    const auto eq = pair.find('=');
    if (pair.substr(0, eq) == name) return eq == std::string_view::npos ? "" : percent_decode(pair.substr(eq + 1), true);
    start = end + 1;
  }
  return {};
}

struct http_server::impl : std::enable_shared_from_this<http_server::impl> {
  impl(asio::io_context& io, server_settings s, http_handler h)
      : io(io), settings(std::move(s)), handler(std::move(h)), acceptor(io) {}

  asio::io_context& io;
  server_settings settings;
  http_handler handler;
  tcp::acceptor acceptor;
  std::shared_ptr<ssl::context> tls;  // new connections' context (none: plain HTTP); SIGHUP may replace it
  std::shared_ptr<listener_stats> stats = std::make_shared<listener_stats>();
  bool stopped = false;
  asio::steady_timer retry_accept{io};

  // What the listener knows of each open connection. Everything here is touched only on the
  // io_context's one thread (sessions are created and destroyed there), so it needs no lock.
  struct connection {
    virtual ~connection() = default;
    virtual void evict() = 0;  // closes it at once; it gives its slot back before it returns
    std::string address;
    bool proven = false;  // a request of it passed the screen
    std::list<connection*>::iterator slot;
    bool holds_slot = false;
    std::shared_ptr<ssl::context> tls;  // the context its stream was made with (TLS only)
  };
  std::list<connection*> open;  // oldest first
  std::map<std::string, int> per_address;

  void take_slot(connection& c) {
    c.slot = open.insert(open.end(), &c);
    c.holds_slot = true;
    ++per_address[c.address];
    ++stats->open;
  }
  void give_back_slot(connection& c) {
    if (!c.holds_slot) return;
    c.holds_slot = false;
    open.erase(c.slot);
    --stats->open;
    if (--per_address[c.address] == 0) per_address.erase(c.address);
  }
  // Makes room for a connection from `address`; false when every candidate slot is held by
  // connections that have proven themselves (the newcomer is then turned away).
  bool make_room(const std::string& address) {
    const auto it = per_address.find(address);
    const bool client_full = it != per_address.end() && it->second >= max_sessions_per_client;
    if (!client_full && open.size() < max_sessions) return true;
    for (connection* c : open) {
      if (!c->proven && (!client_full || c->address == address)) {
        ++stats->evicted;
        c->evict();
        return true;
      }
    }
    ++stats->refused;
    return false;
  }

  void accept();
};

namespace {

// One connection: read a request, answer it, and again while the client keeps it alive.
template <typename Stream>
class session : public http_server::impl::connection, public std::enable_shared_from_this<session<Stream>> {
 public:
  session(std::shared_ptr<http_server::impl> server, Stream stream, std::string peer)
      : server_(std::move(server)), stream_(std::move(stream)) {
    address = std::move(peer);
    server_->take_slot(*this);
  }
  ~session() override { server_->give_back_slot(*this); }

  void evict() override {
    evicted_ = true;
    server_->give_back_slot(*this);
    beast::error_code ignored;
    beast::get_lowest_layer(stream_).socket().close(ignored);  // pending reads end with an error
  }

  void start_tls() {
    beast::get_lowest_layer(stream_).expires_after(handshake_timeout);
    stream_.async_handshake(ssl::stream_base::server, [self = this->shared_from_this()](beast::error_code ec) {
      if (ec) {
        if (!self->evicted_) ++self->server_->stats->handshake_failures;  // an unknown client certificate ends here
        return;
      }
      self->read();
    });
  }

  // The header first: the request is screened (authentication, Host) before its body is read,
  // so nobody unauthenticated can make the server buffer up to body_limit.
  void read() {
    parser_.emplace();
    parser_->body_limit(static_cast<std::uint64_t>(server_->settings.body_limit));
    parser_->header_limit(16 * 1024);
    beast::get_lowest_layer(stream_).expires_after(header_timeout);
    http::async_read_header(stream_, buffer_, *parser_, [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
      self->on_header(ec);
    });
  }

 private:
  http_request request_of(const http::request<http::string_body>& req) {
    http_request r;
    r.method = std::string(req.method_string());
    const std::string_view target = req.target();
    const auto q = target.find('?');
    r.path = percent_decode(target.substr(0, q), false);
    if (q != std::string_view::npos) r.query = std::string(target.substr(q + 1));
    r.authorization = std::string(req[http::field::authorization]);
    r.content_type = std::string(req[http::field::content_type]);
    r.host = std::string(req[http::field::host]);
    r.remote = address;  // read once, when the connection was accepted
    return r;
  }

  bool read_failed(beast::error_code ec) {
    if (!ec) return false;
    if (evicted_) return true;  // its socket is closed already
    if (ec == http::error::end_of_stream || ec == beast::error::timeout || ec == asio::error::eof) {
      close();
    } else if (ec == http::error::body_limit) {
      answer(json_error(413, "request body larger than " + std::to_string(server_->settings.body_limit) +
                                     " bytes; send fewer records per request"),
             11, false);
    } else {
      answer(json_error(400, "malformed HTTP request"), 11, false);
    }
    return true;
  }

  void on_header(beast::error_code ec) {
    if (read_failed(ec)) return;
    const auto& head = parser_->get();
    if (server_->settings.screen) {
      if (auto refusal = server_->settings.screen(request_of(head))) {
        return answer(*refusal, head.version(), false);  // closes: the body is never read
      }
    }
    proven = true;  // from now on its slot is not given to newcomers
    // The body gets the step timeout plus time for a slow link (64 KiB/s, about 0.5 Mbit/s).
    const auto length = parser_->content_length().value_or(0);
    beast::get_lowest_layer(stream_).expires_after(server_->settings.timeout +
                                                   std::chrono::seconds(length / (64 * 1024)));
    http::async_read(stream_, buffer_, *parser_,
                     [self = this->shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    if (read_failed(ec)) return;
    auto req = parser_->release();
    http_request r = request_of(req);
    r.body = std::move(req.body());
    const unsigned version = req.version();
    const bool keep_alive = req.keep_alive();
    const std::string section = server_->settings.section;
    const std::string path = r.path;
    // The answer may come from another thread (a store worker): back onto this connection's strand.
    auto self = this->shared_from_this();
    auto answered = std::make_shared<std::atomic<bool>>(false);
    http_respond respond = [self, version, keep_alive, answered](http_response response) {
      if (answered->exchange(true)) return;  // once
      boost::asio::post(self->stream_.get_executor(), [self, response = std::move(response), version, keep_alive] {
        self->answer(response, version, keep_alive);
      });
    };
    try {
      server_->handler(r, respond);
    } catch (const std::exception& e) {
      // Store and library messages name tables and limits, never values.
      std::fprintf(stderr, "migraine-connector: %s %s failed: %s\n", section.c_str(), path.c_str(), e.what());
      respond(json_error(500, "internal error; see the connector's stderr"));
    }
  }

  void answer(const http_response& r, unsigned version, bool keep_alive) {
    auto res = std::make_shared<http::response<http::string_body>>(to_beast(r, version, keep_alive));
    beast::get_lowest_layer(stream_).expires_after(server_->settings.timeout);
    http::async_write(stream_, *res, [self = this->shared_from_this(), res, keep_alive](beast::error_code ec, std::size_t) {
      if (ec || !keep_alive) return self->close();
      self->read();
    });
  }

  void close() {
    beast::error_code ignored;
    if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
      stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    } else {
      beast::get_lowest_layer(stream_).socket().shutdown(tcp::socket::shutdown_send, ignored);
    }
  }

  std::shared_ptr<http_server::impl> server_;
  Stream stream_;
  bool evicted_ = false;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
};

}  // namespace

void http_server::impl::accept() {
  acceptor.async_accept(asio::make_strand(io), [self = shared_from_this()](beast::error_code ec, tcp::socket socket) {
    if (self->stopped) return;
    if (ec) {
      // Out of descriptors, say: wait a little rather than spin on a failing accept.
      self->retry_accept.expires_after(std::chrono::milliseconds(100));
      self->retry_accept.async_wait([self](beast::error_code) {
        if (!self->stopped) self->accept();
      });
      return;
    }
    beast::error_code peer_ec;
    const auto peer = socket.remote_endpoint(peer_ec);
    const std::string address = peer_ec ? std::string() : peer.address().to_string();
    if (peer_ec || !self->make_room(address)) {
      beast::error_code ignored;
      socket.close(ignored);  // gone already, or full of proven connections: the client may try again
    } else if (self->tls) {
      auto tls = self->tls;
      auto s = std::make_shared<session<beast::ssl_stream<beast::tcp_stream>>>(
          self, beast::ssl_stream<beast::tcp_stream>(beast::tcp_stream(std::move(socket)), *tls), address);
      s->tls = std::move(tls);
      s->start_tls();
    } else {
      std::make_shared<session<beast::tcp_stream>>(self, beast::tcp_stream(std::move(socket)), address)->read();
    }
    self->accept();
  });
}

http_server::http_server(asio::io_context& io, server_settings settings, http_handler handler)
    : impl_(std::make_shared<impl>(io, std::move(settings), std::move(handler))) {
  auto& s = impl_->settings;
  const std::string where = "setting " + s.section + ".listen " + s.listen.host + ":" + std::to_string(s.listen.port);
  if (s.cert_file && s.key_file) {
    impl_->tls = server_tls(s);
  }
  beast::error_code ec;
  tcp::resolver resolver(io);
  const auto endpoints = resolver.resolve(s.listen.host, std::to_string(s.listen.port), ec);
  if (ec || endpoints.empty()) throw config_error(where + ": cannot resolve the host");
  const tcp::endpoint endpoint = endpoints.begin()->endpoint();
  // Plain HTTP only where nothing but this machine reaches it: checked on the address itself,
  // whatever name the configuration used.
  auto address = endpoint.address();
  if (address.is_v6() && address.to_v6().is_v4_mapped()) address = asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6());
  if (!impl_->tls && !address.is_loopback()) {
    throw config_error(where + " resolves to " + address.to_string() + ", not a loopback address: set " + s.section +
                       ".cert_file and " + s.section + ".key_file to serve HTTPS there");
  }
  auto& acceptor = impl_->acceptor;
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) throw config_error(where + ": cannot listen (" + ec.message() + ")");
  impl_->accept();
}

http_server::~http_server() {
  impl_->stopped = true;
  beast::error_code ignored;
  impl_->acceptor.close(ignored);
}

unsigned short http_server::port() const { return impl_->acceptor.local_endpoint().port(); }

std::shared_ptr<const listener_stats> http_server::stats() const { return impl_->stats; }

bool http_server::reload_tls() {
  if (!impl_->tls) return false;
  impl_->tls = server_tls(impl_->settings);  // throws, and changes nothing, for a bad file
  return true;
}

}  // namespace connector
