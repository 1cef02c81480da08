// The EHR client against an in-test TLS server that misbehaves on command: keep-alive reuse, an
// EHR closing idle connections (with and without a close_notify, and just as a request arrives),
// a reset after the request went out, a slow answer, a refused connection, Retry-After, a request
// withheld by its sender, and the TLS goodbye when a connection is retired. Certificates are made
// at test time by certs/make-dev-certs.sh.
#include "connector/net/ehr_client.h"

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <mutex>
#include <thread>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <gtest/gtest.h>

#include "connector/net/http_dates.h"
#include "support/test_support.h"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
namespace fs = std::filesystem;
using tcp = asio::ip::tcp;
using namespace connector;

const fs::path& cert_dir() {
  static const fs::path dir = [] {
    const fs::path d = fs::temp_directory_path() / ("ehr-client-test-certs-" + std::to_string(::getpid()));
    const std::string command = test_support::source_path("certs/make-dev-certs.sh") + " " + d.string() + " > /dev/null 2>&1";
    if (std::system(command.c_str()) != 0) throw std::runtime_error("make-dev-certs.sh failed");
    return d;
  }();
  return dir;
}

using tls_stream = ssl::stream<tcp::socket>;

// One TLS server on 127.0.0.1, each connection handled by the test's script on the server thread.
class scripted_server {
 public:
  using script = std::function<void(tls_stream&, int connection)>;

  explicit scripted_server(script on_connection) : tls_(ssl::context::tls_server), on_connection_(std::move(on_connection)) {
    tls_.use_certificate_chain_file((cert_dir() / "server.pem").string());
    tls_.use_private_key_file((cert_dir() / "server.key").string(), ssl::context::pem);
    acceptor_.open(tcp::v4());
    acceptor_.set_option(asio::socket_base::reuse_address(true));
    acceptor_.bind({asio::ip::make_address("127.0.0.1"), 0});
    acceptor_.listen();
    thread_ = std::thread([this] { serve(); });
  }
  ~scripted_server() {
    stopping_ = true;
    boost::system::error_code ignored;
    tcp::socket wake(io_);
    wake.connect(acceptor_.local_endpoint(), ignored);  // unblocks accept
    thread_.join();
  }
  unsigned short port() const { return acceptor_.local_endpoint().port(); }
  std::string base() const { return "https://localhost:" + std::to_string(port()) + "/fhir"; }

  std::atomic<int> connections{0};
  std::atomic<int> requests{0};
  std::atomic<int> close_notifies{0};  // clean TLS shutdowns the client sent

  // Reads one request; false when the client closed (counting a close_notify).
  bool read_request(tls_stream& s, beast::flat_buffer& buffer) {
    http::request<http::string_body> req;
    beast::error_code ec;
    http::read(s, buffer, req, ec);
    if (ec) {
      if (ec == asio::error::eof || ec == http::error::end_of_stream) ++close_notifies;  // SSL_ERROR_ZERO_RETURN
      return false;
    }
    ++requests;
    last_target = std::string(req.target());
    return true;
  }
  static void answer(tls_stream& s, int status, bool keep_alive = true, const std::string& retry_after = "") {
    http::response<http::string_body> res{static_cast<http::status>(status), 11};
    res.set(http::field::content_type, "application/fhir+json");
    if (!retry_after.empty()) res.set(http::field::retry_after, retry_after);
    res.keep_alive(keep_alive);
    res.body() = status == 200 ? R"({"resourceType":"Bundle","type":"transaction-response"})" : "{}";
    res.prepare_payload();
    beast::error_code ec;
    http::write(s, res, ec);
  }
  static void close_notify(tls_stream& s) {
    beast::error_code ec;
    s.shutdown(ec);
  }
  static void reset(tls_stream& s) {
    beast::error_code ec;
    s.lowest_layer().set_option(asio::socket_base::linger(true, 0), ec);
    s.lowest_layer().close(ec);
  }
  std::string last_target;

 private:
  void serve() {
    while (!stopping_) {
      tcp::socket socket(io_);
      boost::system::error_code ec;
      acceptor_.accept(socket, ec);
      if (ec || stopping_) break;
      const int n = ++connections;
      auto handle = [this, n](tcp::socket sock) {
        tls_stream s(std::move(sock), tls_);
        beast::error_code hec;
        s.handshake(ssl::stream_base::server, hec);
        if (!hec) on_connection_(s, n);
      };
      workers_.emplace_back(handle, std::move(socket));
    }
    for (auto& w : workers_) w.join();
  }

  asio::io_context io_;
  ssl::context tls_;
  tcp::acceptor acceptor_{io_};
  script on_connection_;
  std::thread thread_;
  std::vector<std::thread> workers_;
  std::atomic<bool> stopping_{false};
};

class ehr_client_test : public testing::Test {
 protected:
  ehr_settings settings(const std::string& base, int timeout_s = 5) {
    ehr_settings s;
    s.base_url = base;
    s.ca_file = (cert_dir() / "ca.pem").string();
    s.connections = 1;
    s.timeout = std::chrono::seconds(timeout_s);
    return s;
  }

  // Sends one request and runs the loop until it is answered.
  ehr_answer send(ehr_client& client, std::function<bool()> may_send = nullptr) {
    ehr_answer got;
    bool done = false;
    EXPECT_TRUE(client.send({.path = "", .content_type = "application/fhir+json", .body = R"({"resourceType":"Bundle"})",
                             .request_id = "test-1", .may_send = std::move(may_send), .accept = {}, .authorization = {}, .method = {}, .headers = {}},
                            [&](ehr_answer a) {
                              got = std::move(a);
                              done = true;
                            }));
    io_.restart();
    while (!done && io_.run_one() > 0) {
    }
    return got;
  }
  void pause(int ms) {
    asio::steady_timer t(io_, std::chrono::milliseconds(ms));
    t.wait();
  }

  asio::io_context io_;
};

TEST_F(ehr_client_test, keeps_one_connection_alive_for_many_requests) {
  scripted_server server([&](tls_stream& s, int) {
    beast::flat_buffer b;
    while (server.read_request(s, b)) server.answer(s, 200);
  });
  ehr_client client(io_, settings(server.base()));
  for (int i = 0; i < 5; ++i) EXPECT_EQ(send(client).outcome.http_status, 200);
  EXPECT_EQ(client.handshakes(), 1);
  EXPECT_EQ(server.connections, 1);
}

TEST_F(ehr_client_test, an_ehr_that_closed_an_idle_connection_is_not_an_outage) {
  // The EHR answers one request per connection, then closes it as idle a moment later.
  for (bool polite : {true, false}) {
    SCOPED_TRACE(polite ? "closed with a close_notify" : "reset without one");
    scripted_server server([&](tls_stream& s, int) {
      beast::flat_buffer b;
      if (!server.read_request(s, b)) return;
      server.answer(s, 200);
      std::this_thread::sleep_for(std::chrono::milliseconds(30));
      polite ? server.close_notify(s) : server.reset(s);
    });
    ehr_client client(io_, settings(server.base()));
    EXPECT_EQ(send(client).outcome.http_status, 200);
    pause(100);  // the EHR has closed it by now
    const auto second = send(client);
    EXPECT_EQ(second.outcome.what, attempt_outcome::kind::response) << second.error;
    EXPECT_EQ(second.outcome.http_status, 200);
    EXPECT_EQ(server.requests, 2) << "each request reached the EHR once";
  }
}

TEST_F(ehr_client_test, a_close_just_as_the_request_arrives_is_reported_as_such_and_not_resent) {
  // Connection 1: answers the first request, then reads the second and closes without a word (the
  // EHR's idle timer fired as the bytes arrived, or a balancer cut it while the EHR works on it).
  // Not resent at once: two concurrent conditional creates could both create.
  scripted_server server([&](tls_stream& s, int connection) {
    beast::flat_buffer b;
    if (connection == 1) {
      if (!server.read_request(s, b)) return;
      server.answer(s, 200);
      if (server.read_request(s, b)) server.reset(s);
      return;
    }
    while (server.read_request(s, b)) server.answer(s, 200);
  });
  ehr_client client(io_, settings(server.base()));
  EXPECT_EQ(send(client).outcome.http_status, 200);
  const auto second = send(client);
  EXPECT_EQ(second.outcome.what, attempt_outcome::kind::connection_failed);
  EXPECT_TRUE(second.outcome.request_sent) << "it went out whole: possibly processed";
  EXPECT_TRUE(second.closed_on_reuse) << "so the engine does not take the EHR for down";
  EXPECT_EQ(client.fresh_resends(), 0);
  EXPECT_EQ(send(client).outcome.http_status, 200) << "the next request opens a fresh connection";
  EXPECT_EQ(server.connections, 2);
}

TEST_F(ehr_client_test, a_reset_after_sending_on_a_fresh_connection_is_a_failure_that_may_have_arrived) {
  scripted_server server([&](tls_stream& s, int) {
    beast::flat_buffer b;
    if (server.read_request(s, b)) server.reset(s);
  });
  ehr_client client(io_, settings(server.base()));
  const auto a = send(client);
  EXPECT_EQ(a.outcome.what, attempt_outcome::kind::connection_failed);
  EXPECT_TRUE(a.outcome.request_sent) << "the EHR got the request: its fate is unknown";
  EXPECT_TRUE(outcome_unknown(a.outcome));
  EXPECT_EQ(client.fresh_resends(), 0) << "only a reused connection earns the resend";
}

TEST_F(ehr_client_test, a_slow_answer_times_out_as_possibly_delivered) {
  scripted_server server([&](tls_stream& s, int) {
    beast::flat_buffer b;
    if (!server.read_request(s, b)) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    server.answer(s, 200);
  });
  ehr_client client(io_, settings(server.base(), 1));
  const auto a = send(client);
  EXPECT_EQ(a.outcome.what, attempt_outcome::kind::timed_out) << a.error;
  EXPECT_TRUE(a.outcome.request_sent);
}

TEST_F(ehr_client_test, a_refused_connection_sent_nothing) {
  std::string base;
  {
    scripted_server gone([](tls_stream&, int) {});
    base = gone.base();
  }  // the port is closed now
  ehr_client client(io_, settings(base));
  const auto a = send(client);
  EXPECT_EQ(a.outcome.what, attempt_outcome::kind::connection_failed);
  EXPECT_FALSE(a.outcome.request_sent);
  EXPECT_FALSE(outcome_unknown(a.outcome));
}

TEST_F(ehr_client_test, a_withheld_request_is_never_written) {
  scripted_server server([&](tls_stream& s, int) {
    beast::flat_buffer b;
    while (server.read_request(s, b)) server.answer(s, 200);
  });
  ehr_client client(io_, settings(server.base()));
  const auto a = send(client, [] { return false; });
  EXPECT_EQ(a.outcome.what, attempt_outcome::kind::withheld);
  EXPECT_EQ(send(client).outcome.http_status, 200) << "the connection is still good";
  EXPECT_EQ(server.requests, 1);
}

TEST_F(ehr_client_test, retry_after_is_read_strictly) {
  std::atomic<int> which{0};
  const std::vector<std::string> values = {"7", "12abc", "-5", "Wed, 21 Oct 2015 07:28:00 GMT", "99999999999999999999"};
  scripted_server server([&](tls_stream& s, int) {
    beast::flat_buffer b;
    while (server.read_request(s, b)) server.answer(s, 429, true, values[which++]);
  });
  ehr_client client(io_, settings(server.base()));
  EXPECT_EQ(send(client).outcome.retry_after, std::chrono::seconds(7));
  EXPECT_EQ(send(client).outcome.retry_after, std::nullopt);
  EXPECT_EQ(send(client).outcome.retry_after, std::nullopt);
  EXPECT_EQ(send(client).outcome.retry_after, std::chrono::seconds(0)) << "a date in the past: no wait";
  EXPECT_EQ(send(client).outcome.retry_after, std::chrono::seconds(86400)) << "huge values are held at a day";
}

TEST_F(ehr_client_test, a_connection_the_ehr_ends_is_retired_with_a_tls_close_notify) {
  scripted_server server([&](tls_stream& s, int) {
    beast::flat_buffer b;
    if (!server.read_request(s, b)) return;
    server.answer(s, 200, false);  // Connection: close
    server.read_request(s, b);     // sees the client's close_notify
  });
  ehr_client client(io_, settings(server.base()));
  EXPECT_EQ(send(client).outcome.http_status, 200);
  pause(200);
  io_.restart();
  io_.run_for(std::chrono::milliseconds(200));
  for (int i = 0; i < 50 && server.close_notifies == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(server.close_notifies, 1);
}

TEST_F(ehr_client_test, idle_connections_are_closed_politely_at_shutdown) {
  scripted_server server([&](tls_stream& s, int) {
    beast::flat_buffer b;
    while (server.read_request(s, b)) server.answer(s, 200);
  });
  {
    ehr_client client(io_, settings(server.base()));
    EXPECT_EQ(send(client).outcome.http_status, 200);
    client.close_idle();
    io_.restart();
    io_.run_for(std::chrono::milliseconds(300));
  }
  for (int i = 0; i < 50 && server.close_notifies == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(server.close_notifies, 1);
}

// ---- Retry-After and HTTP-dates, exactly ----

TEST(http_dates, the_three_date_forms_are_accepted_and_nothing_else) {
  const std::int64_t t = 784111777;  // Sun, 06 Nov 1994 08:49:37 GMT
  EXPECT_EQ(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), t);
  EXPECT_EQ(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), t);
  EXPECT_EQ(parse_http_date("Sun Nov  6 08:49:37 1994"), t);
  EXPECT_EQ(parse_http_date("Sun, 06 Nov 1994 08:49:37 UTC"), std::nullopt);
  EXPECT_EQ(parse_http_date("Sun, 6 Nov 1994 08:49:37 GMT"), std::nullopt);
  EXPECT_EQ(parse_http_date("Sun, 06 Foo 1994 08:49:37 GMT"), std::nullopt);
  EXPECT_EQ(parse_http_date("Sun, 06 Nov 1994 25:49:37 GMT"), std::nullopt);
  EXPECT_EQ(parse_http_date(""), std::nullopt);
}

TEST(http_dates, retry_after_is_delta_seconds_or_a_date) {
  const std::int64_t now = 784111777000;
  EXPECT_EQ(parse_retry_after("120", now), std::chrono::seconds(120));
  EXPECT_EQ(parse_retry_after(" 3 ", now), std::chrono::seconds(3));
  EXPECT_EQ(parse_retry_after("Sun, 06 Nov 1994 08:50:37 GMT", now), std::chrono::seconds(60));
  EXPECT_EQ(parse_retry_after("Sun, 06 Nov 1994 08:48:37 GMT", now), std::chrono::seconds(0));
  for (const char* bad : {"-5", "12abc", "1.5", "+3", "0x10", "", "soon"}) {
    EXPECT_EQ(parse_retry_after(bad, now), std::nullopt) << bad;
  }
  EXPECT_EQ(parse_retry_after("999999999999999999999999", now), std::chrono::seconds(86400));
}

TEST(delivery_policy_retry_after, is_capped_at_the_longest_delay) {
  const delivery_policy policy({10, std::chrono::milliseconds(1000), std::chrono::milliseconds(600000)}, [] { return 0.0; });
  EXPECT_EQ(policy.backoff(1, std::chrono::seconds(30)), std::chrono::milliseconds(30000));
  EXPECT_EQ(policy.backoff(1, std::chrono::seconds(86400)), std::chrono::milliseconds(600000));
}

}  // namespace
