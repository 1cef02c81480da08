// Names a patient in the outbox's lanes, logs and metrics without revealing who it is: an
// HMAC-SHA256 of the MRN under a secret key of this installation.
#pragma once

#include <string>
#include <string_view>

namespace connector {

class patient_key {
 public:
  // The secret comes from the environment (MIGRAINE_PATIENT_KEY) or from `key_file`, which is
  // created with a fresh random key (mode 0600) when it does not exist yet. Throws config_error.
  static patient_key load(const std::string& key_file);

  explicit patient_key(std::string secret) : secret_(std::move(secret)) {}

  // 32 hex characters; the same MRN always gives the same key under the same secret.
  std::string of(std::string_view mrn) const;

 private:
  std::string secret_;
};

}  // namespace connector
