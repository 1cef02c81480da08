// Names a patient in the outbox's lanes, logs and metrics without revealing who it is: an
// HMAC-SHA256 of the MRN under a secret key of this installation.
//
// One store, one key: a second key would hash the same MRN into a second lane, losing the
// patient's order and holding follow-ups forever. So the store records the key's fingerprint
// when it is created, and every process that opens it with another key is refused, naming the
// setting and the source it used; a key file is created only for a new store.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace connector {

class outbox;

class patient_key {
 public:
  // The key for `store`: from MIGRAINE_PATIENT_KEY or from `key_file` (the setting
  // store.patient_key_file), checked against the fingerprint the store recorded. A missing key
  // file is created (mode 0600, a fresh random key) only when the store holds nothing yet.
  // Throws config_error.
  static patient_key open_for(outbox& store, const std::string& key_file);
  // The same checks without creating or recording anything (config-check): what would be used.
  static std::string check_for(outbox& store, const std::string& key_file);

  explicit patient_key(std::string secret, std::string source = "a key given in code")
      : secret_(std::move(secret)), source_(std::move(source)) {}

  // 32 hex characters; the same MRN always gives the same key under the same secret.
  std::string of(std::string_view mrn) const;
  // 16 hex characters that tell keys apart without revealing them.
  std::string fingerprint() const;
  // Where the key came from, for messages: "MIGRAINE_PATIENT_KEY", "store.patient_key_file /path".
  const std::string& source() const { return source_; }

 private:
  static std::optional<patient_key> resolve(outbox& store, const std::string& key_file, bool create);

  std::string secret_;
  std::string source_;
};

}  // namespace connector
