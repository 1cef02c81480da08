// Keyed hashing of MRNs with OpenSSL.
#include "connector/config/patient_key.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "connector/config/config.h"

namespace connector {
namespace {

std::string hex(const unsigned char* bytes, std::size_t n) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * n);
  for (std::size_t i = 0; i < n; ++i) {
    out += digits[bytes[i] >> 4];
    out += digits[bytes[i] & 0x0f];
  }
  return out;
}

// Creates the key file exclusively, readable by its owner only.
std::string create_key_file(const std::string& path) {
  unsigned char random[32];
  if (RAND_bytes(random, sizeof random) != 1) throw config_error("cannot draw a random patient key");
  const std::string secret = hex(random, sizeof random);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (fd < 0) throw config_error("cannot create the patient key file " + path);
  const bool written = ::write(fd, secret.data(), secret.size()) == static_cast<ssize_t>(secret.size()) &&
                       ::fsync(fd) == 0;
  ::close(fd);
  if (!written) throw config_error("cannot write the patient key file " + path);
  return secret;
}

}  // namespace

patient_key patient_key::load(const std::string& key_file) {
  if (const char* from_env = std::getenv("MIGRAINE_PATIENT_KEY"); from_env != nullptr && *from_env) {
    return patient_key(from_env);
  }
  std::ifstream in(key_file, std::ios::binary);
  if (!in) return patient_key(create_key_file(key_file));
  std::ostringstream text;
  text << in.rdbuf();
  std::string secret = text.str();
  while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
  if (secret.size() < 16) throw config_error("the patient key file " + key_file + " holds too short a key");
  return patient_key(std::move(secret));
}

std::string patient_key::of(std::string_view mrn) const {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), secret_.data(), static_cast<int>(secret_.size()),
       reinterpret_cast<const unsigned char*>(mrn.data()), mrn.size(), digest, &length);
  return hex(digest, 16);
}

}  // namespace connector
