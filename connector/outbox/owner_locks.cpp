// OFD byte-range locks (Linux F_OFD_SETLK / F_OFD_GETLK).
#include "connector/outbox/owner_locks.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace connector {
namespace {

struct flock byte_lock(short type, std::int64_t slot) {
  struct flock l {};
  l.l_type = type;
  l.l_whence = SEEK_SET;
  l.l_start = static_cast<off_t>(slot);
  l.l_len = 1;
  l.l_pid = 0;  // required for OFD locks
  return l;
}

}  // namespace

owner_locks::owner_locks(const std::string& store_path) {
  const std::string path = store_path + "-owners.lock";
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd_ < 0) throw std::runtime_error("cannot open " + path + ": " + std::strerror(errno));
}

owner_locks::~owner_locks() {
  if (fd_ >= 0) ::close(fd_);
}

bool owner_locks::try_lock(std::int64_t slot) {
  struct flock l = byte_lock(F_WRLCK, slot);
  return ::fcntl(fd_, F_OFD_SETLK, &l) == 0;
}

void owner_locks::unlock(std::int64_t slot) {
  struct flock l = byte_lock(F_UNLCK, slot);
  ::fcntl(fd_, F_OFD_SETLK, &l);
}

bool owner_locks::held_elsewhere(std::int64_t slot) const {
  struct flock l = byte_lock(F_WRLCK, slot);
  if (::fcntl(fd_, F_OFD_GETLK, &l) != 0) return true;  // cannot tell: assume alive, let the lease decide
  return l.l_type != F_UNLCK;
}

}  // namespace connector
