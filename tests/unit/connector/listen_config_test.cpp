// The configuration's intake and watch sections: inbox, ingest API, admin server, log, alerts;
// listen addresses, and refusing what would expose patient data or the admin API.
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "connector/config/config.h"

namespace {

namespace fs = std::filesystem;
using namespace connector;

class listen_config_test : public testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = testing::TempDir() + "listen-config-test-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& text) const {
    const fs::path file = dir_ / name;
    fs::create_directories(file.parent_path());
    std::ofstream(file, std::ios::binary) << text;
    return file.string();
  }

  connector_config load(const std::string& text) const { return load_config(write("connector.jsonc", text)); }

  // The config_error's message, or "" when the file loads.
  std::string error_of(const std::string& text) const {
    try {
      load(text);
    } catch (const config_error& e) {
      return e.what();
    }
    return "";
  }

  std::string in_dir(const std::string& relative) const { return (dir_ / relative).lexically_normal().string(); }

  fs::path dir_;
};

// ---- inbox ----

TEST_F(listen_config_test, inbox_dir_is_relative_to_the_config_file) {
  const auto c = load(R"({"inbox": {"dir": "drop/in", "poll_ms": 250}})");
  EXPECT_EQ(c.inbox.dir, in_dir("drop/in"));
  EXPECT_EQ(c.inbox.poll_ms, 250);
}

TEST_F(listen_config_test, no_inbox_section_means_no_inbox) {
  EXPECT_TRUE(load("{}").inbox.dir.empty());
  EXPECT_NE(error_of(R"({"inbox": {}})").find("inbox.dir"), std::string::npos);
  EXPECT_NE(error_of(R"({"inbox": {"dir": "in", "poll_ms": 1}})").find("inbox.poll_ms"), std::string::npos);
}

// ---- ingest_api ----

TEST_F(listen_config_test, ingest_api_listen_reads_ipv4_ipv6_and_names) {
  auto c = load(R"({"ingest_api": {"listen": "127.0.0.1:8443", "token_file": "secrets/token"}})");
  ASSERT_TRUE(c.ingest_api.listen.has_value());
  EXPECT_EQ(c.ingest_api.listen->host, "127.0.0.1");
  EXPECT_EQ(c.ingest_api.listen->port, 8443);
  EXPECT_TRUE(c.ingest_api.listen->loopback());
  EXPECT_EQ(c.ingest_api.token_file, in_dir("secrets/token"));

  c = load(R"({"ingest_api": {"listen": "[::1]:0", "token_file": "token"}})");
  ASSERT_TRUE(c.ingest_api.listen.has_value());
  EXPECT_EQ(c.ingest_api.listen->host, "::1");
  EXPECT_EQ(c.ingest_api.listen->port, 0);
  EXPECT_TRUE(c.ingest_api.listen->loopback());

  c = load(R"({"ingest_api": {"listen": "localhost:1", "token_file": "token"}})");
  ASSERT_TRUE(c.ingest_api.listen.has_value());
  EXPECT_EQ(c.ingest_api.listen->host, "localhost");
  EXPECT_EQ(c.ingest_api.listen->port, 1);
  EXPECT_TRUE(c.ingest_api.listen->loopback());

  c = load(R"({"ingest_api": {"listen": "127.0.0.1:65535", "token_file": "token"}})");
  EXPECT_EQ(c.ingest_api.listen->port, 65535);
}

TEST_F(listen_config_test, no_ingest_api_section_means_no_api) {
  const auto c = load("{}");
  EXPECT_FALSE(c.ingest_api.listen.has_value());
  EXPECT_FALSE(c.admin.listen.has_value());
  EXPECT_FALSE(c.alerts.enabled);
}

TEST_F(listen_config_test, loopback_is_only_the_loopback_addresses) {
  EXPECT_TRUE((listen_address{"127.0.0.1", 1}).loopback());
  EXPECT_TRUE((listen_address{"127.1.2.3", 1}).loopback());
  EXPECT_TRUE((listen_address{"::1", 1}).loopback());
  EXPECT_TRUE((listen_address{"localhost", 1}).loopback());
  EXPECT_FALSE((listen_address{"0.0.0.0", 1}).loopback());
  EXPECT_FALSE((listen_address{"::", 1}).loopback());
  EXPECT_FALSE((listen_address{"10.0.0.5", 1}).loopback());
  EXPECT_FALSE((listen_address{"127.example.com", 1}).loopback());
  EXPECT_FALSE((listen_address{"connector.clinic.example", 1}).loopback());
}

TEST_F(listen_config_test, bad_listen_addresses_are_refused) {
  for (const char* bad : {"x:99999", "127.0.0.1:65536", "127.0.0.1", "127.0.0.1:", ":8443", "127.0.0.1:http",
                          "127.0.0.1:80x", "::1:8443", "[::1]", "[::1]8443", "127.0.0.1:-1"}) {
    const auto error = error_of(std::string(R"({"ingest_api": {"listen": ")") + bad + R"(", "token_file": "t"}})");
    EXPECT_NE(error.find("ingest_api.listen"), std::string::npos) << bad << ": " << error;
  }
}

TEST_F(listen_config_test, plain_http_is_refused_off_loopback) {
  const auto error = error_of(R"({"ingest_api": {"listen": "0.0.0.0:8443", "token_file": "token"}})");
  EXPECT_NE(error.find("ingest_api.cert_file"), std::string::npos) << error;
  EXPECT_NE(error_of(R"({"ingest_api": {"listen": "10.1.2.3:8443", "token_file": "token"}})").find("ingest_api.cert_file"),
            std::string::npos);
  const auto c = load(R"({"ingest_api": {"listen": "0.0.0.0:8443", "token_file": "token",
                                          "cert_file": "tls/server.pem", "key_file": "tls/server.key"}})");
  EXPECT_EQ(c.ingest_api.cert_file, in_dir("tls/server.pem"));
  EXPECT_EQ(c.ingest_api.key_file, in_dir("tls/server.key"));
}

TEST_F(listen_config_test, cert_file_and_key_file_go_together) {
  const auto error = error_of(R"({"ingest_api": {"listen": "0.0.0.0:8443", "token_file": "t", "cert_file": "s.pem"}})");
  EXPECT_NE(error.find("ingest_api.key_file"), std::string::npos) << error;
}

TEST_F(listen_config_test, the_ingest_api_never_accepts_records_unauthenticated) {
  const auto error = error_of(R"({"ingest_api": {"listen": "127.0.0.1:8443"}})");
  EXPECT_NE(error.find("ingest_api.token_file"), std::string::npos) << error;
  EXPECT_NE(error.find("ingest_api.client_ca_file"), std::string::npos) << error;
  // Client certificates alone are enough.
  const auto c = load(R"({"ingest_api": {"listen": "0.0.0.0:8443", "client_ca_file": "tls/clients.pem",
                                          "cert_file": "tls/s.pem", "key_file": "tls/s.key"}})");
  EXPECT_EQ(c.ingest_api.client_ca_file, in_dir("tls/clients.pem"));
  EXPECT_FALSE(c.ingest_api.token_file.has_value());
}

TEST_F(listen_config_test, client_ca_file_needs_tls) {
  const auto error = error_of(R"({"ingest_api": {"listen": "127.0.0.1:8443", "client_ca_file": "clients.pem"}})");
  EXPECT_NE(error.find("ingest_api.client_ca_file"), std::string::npos) << error;
  EXPECT_NE(error.find("ingest_api.cert_file"), std::string::npos) << error;
}

TEST_F(listen_config_test, ingest_api_max_body_bytes_is_bounded) {
  const auto c = load(R"({"ingest_api": {"listen": "127.0.0.1:1", "token_file": "t", "max_body_bytes": 2048}})");
  EXPECT_EQ(c.ingest_api.max_body_bytes, 2048);
  EXPECT_NE(error_of(R"({"ingest_api": {"listen": "127.0.0.1:1", "token_file": "t", "max_body_bytes": 10}})")
                .find("ingest_api.max_body_bytes"),
            std::string::npos);
}

// ---- admin ----

TEST_F(listen_config_test, admin_on_loopback_needs_no_token) {
  const auto c = load(R"({"admin": {"listen": "127.0.0.1:9464"}})");
  ASSERT_TRUE(c.admin.listen.has_value());
  EXPECT_EQ(c.admin.listen->port, 9464);
  EXPECT_FALSE(c.admin.token_file.has_value());
}

TEST_F(listen_config_test, admin_off_loopback_needs_a_token) {
  const auto error = error_of(R"({"admin": {"listen": "0.0.0.0:9464", "cert_file": "a.pem", "key_file": "a.key"}})");
  EXPECT_NE(error.find("admin.token_file"), std::string::npos) << error;
  EXPECT_NE(error_of(R"({"admin": {"listen": "0.0.0.0:9464", "token_file": "admin-token"}})").find("admin.cert_file"),
            std::string::npos);
  const auto c = load(R"({"admin": {"listen": "0.0.0.0:9464", "token_file": "admin-token",
                                     "cert_file": "a.pem", "key_file": "a.key"}})");
  EXPECT_EQ(c.admin.token_file, in_dir("admin-token"));
}

// ---- log ----

TEST_F(listen_config_test, the_log_defaults_to_beside_the_store) {
  EXPECT_EQ(load("{}").log.path, in_dir("sync-log.jsonl"));
  EXPECT_EQ(load(R"({"store": {"path": "data/outbox.db"}})").log.path, in_dir("data/sync-log.jsonl"));
  const auto c = load(R"({"store": {"path": "data/outbox.db"}, "log": {"path": "logs/sync.jsonl",
                                                                         "max_bytes": 1048576, "keep_files": 2}})");
  EXPECT_EQ(c.log.path, in_dir("logs/sync.jsonl"));
  EXPECT_EQ(c.log.max_bytes, 1048576);
  EXPECT_EQ(c.log.keep_files, 2);
  EXPECT_NE(error_of(R"({"log": {"max_bytes": 10}})").find("log.max_bytes"), std::string::npos);
  EXPECT_NE(error_of(R"({"log": {"keep_files": -1}})").find("log.keep_files"), std::string::npos);
}

// ---- alerts ----

TEST_F(listen_config_test, alerts_section_enables_alerts_with_defaults) {
  const auto c = load(R"({"alerts": {}})");
  EXPECT_TRUE(c.alerts.enabled);
  EXPECT_TRUE(c.alerts.webhook_url.empty());
  EXPECT_DOUBLE_EQ(c.alerts.ehr_unreachable_minutes, 5);
  EXPECT_DOUBLE_EQ(c.alerts.oldest_pending_minutes, 30);
  EXPECT_EQ(c.alerts.certificate_days, 30);
  const auto set = load(R"({"alerts": {"webhook_url": "https://hooks.clinic.example/it", "ca_file": "hook-ca.pem",
                                       "ehr_unreachable_minutes": 2.5, "certificate_days": 14}})");
  EXPECT_EQ(set.alerts.webhook_url, "https://hooks.clinic.example/it");
  EXPECT_EQ(set.alerts.ca_file, in_dir("hook-ca.pem"));
  EXPECT_DOUBLE_EQ(set.alerts.ehr_unreachable_minutes, 2.5);
  EXPECT_EQ(set.alerts.certificate_days, 14);
}

TEST_F(listen_config_test, the_webhook_must_be_https) {
  for (const char* url : {"http://hooks.clinic.example/it", "ftp://x", "hooks.clinic.example"}) {
    const auto error = error_of(std::string(R"({"alerts": {"webhook_url": ")") + url + R"("}})");
    EXPECT_NE(error.find("alerts.webhook_url"), std::string::npos) << url << ": " << error;
  }
}

// ---- unknown keys ----

TEST_F(listen_config_test, unknown_keys_are_refused_by_name) {
  EXPECT_EQ(error_of(R"({"ingest_api": {"listen": "127.0.0.1:1", "token_file": "t", "tokn_file": "t"}})"),
            "unknown setting ingest_api.tokn_file");
  EXPECT_EQ(error_of(R"({"admin": {"listen": "127.0.0.1:1", "tls": true}})"), "unknown setting admin.tls");
  EXPECT_EQ(error_of(R"({"inbox": {"dir": "in", "pol_ms": 10}})"), "unknown setting inbox.pol_ms");
  EXPECT_EQ(error_of(R"({"log": {"pth": "x"}})"), "unknown setting log.pth");
  EXPECT_EQ(error_of(R"({"alerts": {"webhook": "https://x"}})"), "unknown setting alerts.webhook");
  EXPECT_EQ(error_of(R"({"metrics": {}})"), "unknown setting metrics");
}

TEST_F(listen_config_test, sections_must_be_objects) {
  EXPECT_NE(error_of(R"({"ingest_api": "127.0.0.1:1"})").find("ingest_api"), std::string::npos);
  EXPECT_NE(error_of(R"({"ingest_api": {"listen": 8443, "token_file": "t"}})").find("ingest_api.listen"),
            std::string::npos);
}

// ---- read_secret_file ----

TEST_F(listen_config_test, read_secret_file_returns_the_first_line_trimmed) {
  EXPECT_EQ(read_secret_file("ingest_api.token_file", write("t1", "  s3cr3t-token \t\r\nsecond line\n")), "s3cr3t-token");
  EXPECT_EQ(read_secret_file("ingest_api.token_file", write("t2", "no-newline")), "no-newline");
  EXPECT_EQ(read_secret_file("ingest_api.token_file", write("t3", "a b\n")), "a b");
}

TEST_F(listen_config_test, read_secret_file_refuses_empty_and_missing_files) {
  for (const char* text : {"", "\n", "   \r\n", "\t \nsecond-line-token\n"}) {
    try {
      read_secret_file("admin.token_file", write("empty", text));
      ADD_FAILURE() << "accepted " << testing::PrintToString(std::string(text));
    } catch (const config_error& e) {
      EXPECT_NE(std::string(e.what()).find("admin.token_file"), std::string::npos) << e.what();
    }
  }
  try {
    read_secret_file("ingest_api.token_file", (dir_ / "missing").string());
    ADD_FAILURE() << "a missing file was read";
  } catch (const config_error& e) {
    EXPECT_NE(std::string(e.what()).find("ingest_api.token_file"), std::string::npos) << e.what();
  }
}

}  // namespace
