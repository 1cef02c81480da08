// What IT staff need to know about the certificate files the configuration names.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace connector {

struct certificate_expiry {
  std::int64_t not_after_epoch_s = 0;  // of the first certificate in the file
  std::int64_t days_left = 0;          // negative once expired
};

// nullopt when the file holds no readable PEM certificate.
std::optional<certificate_expiry> read_certificate_expiry(const std::string& path, std::int64_t now_epoch_s);

// A configured certificate file and how long it stays valid.
struct certificate_days {
  std::string setting;  // "ehr.client_cert_file"
  std::string file;
  std::optional<std::int64_t> days_left;  // nullopt: unreadable
};

struct connector_config;
// Every certificate file the configuration names (EHR, ingest API, admin server, alerts).
std::vector<certificate_days> configured_certificates(const connector_config& config, std::int64_t now_epoch_s);

// True when the PEM private key in key_file belongs to the certificate in cert_file.
bool key_matches_certificate(const std::string& cert_file, const std::string& key_file);

}  // namespace connector
