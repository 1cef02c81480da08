// Bytes as lowercase hex, and SHA-256 digests in hex: file digests (the inbox), lock keys that must
// not carry a name (the PostgreSQL store), key fingerprints, random ids.
#pragma once

#include <string>
#include <string_view>

namespace connector {

std::string hex(std::string_view bytes);
std::string sha256_hex(std::string_view data);

}  // namespace connector
