// Keyed hashing of MRNs with OpenSSL.
#include "connector/config/patient_key.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "connector/config/config.h"
#include "connector/digest.h"
#include "connector/outbox/outbox.h"

namespace connector {
namespace {

// Creates the key file, readable by its owner only, and returns the key in it. Written whole to a
// temporary name, then published with link(), which refuses an existing name: two processes
// starting on a new store at once (the daemon, an ingest) end up with the same key, the first's.
std::optional<std::string> read_key_file(const std::string& path);

std::string create_key_file(const std::string& path) {
  unsigned char random[32];
  if (RAND_bytes(random, sizeof random) != 1) throw config_error("cannot draw a random patient key");
  const std::string secret = hex(std::string_view(reinterpret_cast<const char*>(random), sizeof random));
  const std::string temporary = path + ".new." + std::to_string(::getpid());
  const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) throw config_error("cannot create the patient key file " + path);
  const bool written = ::write(fd, secret.data(), secret.size()) == static_cast<ssize_t>(secret.size()) &&
                       ::fsync(fd) == 0;
  ::close(fd);
  const bool published = written && ::link(temporary.c_str(), path.c_str()) == 0;
  const int link_error = errno;
  ::unlink(temporary.c_str());
  if (published) return secret;
  if (written && link_error == EEXIST) {
    if (auto theirs = read_key_file(path)) return *theirs;  // another process was first
  }
  throw config_error("cannot write the patient key file " + path);
}

}  // namespace

namespace {

std::optional<std::string> read_key_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream text;
  text << in.rdbuf();
  std::string secret = text.str();
  while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
  if (secret.size() < 16) throw config_error("the patient key file " + path + " (store.patient_key_file) holds too short a key");
  return secret;
}

}  // namespace

std::optional<patient_key> patient_key::resolve(outbox& store, const std::string& key_file, bool create) {
  const std::string file_source = "store.patient_key_file " + key_file;
  const char* env = std::getenv("MIGRAINE_PATIENT_KEY");
  const std::optional<std::string> from_env = env != nullptr && *env ? std::optional<std::string>(env) : std::nullopt;
  const std::optional<std::string> from_file = read_key_file(key_file);
  if (from_env && from_file && *from_env != *from_file) {
    throw config_error("MIGRAINE_PATIENT_KEY and " + file_source +
                       " hold different patient keys: keep only the one this store was created with");
  }
  const std::optional<std::string> recorded = store.patient_key_fingerprint();
  std::optional<patient_key> key;
  if (from_env) {
    key.emplace(*from_env, "MIGRAINE_PATIENT_KEY");
  } else if (from_file) {
    key.emplace(*from_file, file_source);
  } else if (recorded || store.holds_records()) {
    throw config_error(file_source + " does not exist, but this store already holds records hashed with a patient "
                       "key" + (recorded ? " (fingerprint " + *recorded + ")" : std::string()) +
                       ": restore the key file from your backup, or set MIGRAINE_PATIENT_KEY to that key; a new key "
                       "would split every patient's lane in two");
  } else if (create) {
    key.emplace(create_key_file(key_file), file_source + " (created for this new store)");
  } else {
    return std::nullopt;  // a new store: the key file is made when records first arrive
  }
  if (recorded && *recorded != key->fingerprint()) {
    throw config_error("the patient key from " + key->source() + " (fingerprint " + key->fingerprint() +
                       ") is not the key this store was created with (fingerprint " + *recorded +
                       "): the same MRN would be hashed two ways. Use the store's own key");
  }
  if (!recorded && create) store.record_patient_key_fingerprint(key->fingerprint());
  return key;
}

patient_key patient_key::open_for(outbox& store, const std::string& key_file) {
  return std::move(*resolve(store, key_file, true));
}

std::string patient_key::check_for(outbox& store, const std::string& key_file) {
  const auto key = resolve(store, key_file, false);
  if (!key) return "store.patient_key_file " + key_file + " will be created for this new store";
  return key->source() + " (fingerprint " + key->fingerprint() + ") is this store's key";
}

std::string patient_key::fingerprint() const {
  static constexpr std::string_view label = "migraine-connector patient key fingerprint v1";
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), secret_.data(), static_cast<int>(secret_.size()),
       reinterpret_cast<const unsigned char*>(label.data()), label.size(), digest, &length);
  return hex(std::string_view(reinterpret_cast<const char*>(digest), 8));
}

std::string patient_key::of(std::string_view mrn) const {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), secret_.data(), static_cast<int>(secret_.size()),
       reinterpret_cast<const unsigned char*>(mrn.data()), mrn.size(), digest, &length);
  return hex(std::string_view(reinterpret_cast<const char*>(digest), 16));
}

}  // namespace connector
