// Certificate file checks with OpenSSL.
#include "connector/config/certificate_files.h"

#include "connector/config/config.h"

#include <cstdio>
#include <memory>

#include <openssl/asn1.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

namespace connector {
namespace {

struct file_closer {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using file_ptr = std::unique_ptr<std::FILE, file_closer>;
struct x509_free {
  void operator()(X509* x) const { X509_free(x); }
};
struct pkey_free {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};

std::unique_ptr<X509, x509_free> read_certificate(const std::string& path) {
  file_ptr f(std::fopen(path.c_str(), "r"));
  if (!f) return nullptr;
  return std::unique_ptr<X509, x509_free>(PEM_read_X509(f.get(), nullptr, nullptr, nullptr));
}

}  // namespace

std::optional<certificate_expiry> read_certificate_expiry(const std::string& path, std::int64_t now_epoch_s) {
  auto cert = read_certificate(path);
  if (!cert) return std::nullopt;
  struct tm not_after {};
  if (ASN1_TIME_to_tm(X509_get0_notAfter(cert.get()), &not_after) != 1) return std::nullopt;
  const std::int64_t epoch = timegm(&not_after);
  return certificate_expiry{epoch, (epoch - now_epoch_s) / 86400 - ((epoch - now_epoch_s) < 0 ? 1 : 0)};
}

bool key_matches_certificate(const std::string& cert_file, const std::string& key_file) {
  auto cert = read_certificate(cert_file);
  file_ptr f(std::fopen(key_file.c_str(), "r"));
  if (!cert || !f) return false;
  std::unique_ptr<EVP_PKEY, pkey_free> key(PEM_read_PrivateKey(f.get(), nullptr, nullptr, nullptr));
  return key && X509_check_private_key(cert.get(), key.get()) == 1;
}

std::vector<certificate_days> configured_certificates(const connector_config& config, std::int64_t now_epoch_s) {
  std::vector<certificate_days> found;
  auto add = [&](const char* setting, const std::optional<std::string>& file) {
    if (!file) return;
    const auto expiry = read_certificate_expiry(*file, now_epoch_s);
    found.push_back({setting, *file, expiry ? std::optional<std::int64_t>(expiry->days_left) : std::nullopt});
  };
  add("ehr.ca_file", config.ehr.ca_file);
  add("ehr.client_cert_file", config.ehr.client_cert_file);
  if (config.ingest_api.listen) {
    add("ingest_api.cert_file", config.ingest_api.cert_file);
    add("ingest_api.client_ca_file", config.ingest_api.client_ca_file);
  }
  if (config.admin.listen) add("admin.cert_file", config.admin.cert_file);
  if (config.alerts.enabled) add("alerts.ca_file", config.alerts.ca_file);
  return found;
}

}  // namespace connector
