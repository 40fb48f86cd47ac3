// SPDX-License-Identifier: MIT
#include "fuse/passthrough.hpp"

#include <sys/ioctl.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "common/log.hpp"

namespace portalfs::fuse {

namespace {
// The backing-file ioctls of /dev/fuse (include/uapi/linux/fuse.h, 6.9+).
struct BackingMap {
  int32_t fd;
  uint32_t flags;
  uint64_t padding;
};
const unsigned long kBackingOpen = _IOW(229, 1, BackingMap);
const unsigned long kBackingClose = _IOW(229, 2, uint32_t);

}  // namespace

Passthrough::Backing Passthrough::acquire(const Inode* inode,
                                          const std::function<Candidate()>& open_backing) {
  if (!io_.active()) return {};
  std::lock_guard lock(mutex_);
  auto [it, first] = backings_.try_emplace(inode, Entry{{}, 0});
  Entry& e = it->second;
  ++e.opens;
  if (!first) return e.backing;
  // An inode that could not get a backing is served by the daemon until its last close (the
  // kernel refuses passthrough opens of an inode open in its page-cache mode).
  const Candidate file = open_backing();
  if (file.fd < 0) return e.backing;
  BackingMap map{file.fd, 0, 0};
  const int id = ::ioctl(io_.dev_fd(), kBackingOpen, &map);
  if (id <= 0) {
    common::log(common::LogLevel::debug,
                std::string("passthrough: backing refused: ") + std::strerror(errno));
    return e.backing;
  }
  e.backing = {id, file.accmode != O_WRONLY, file.accmode != O_RDONLY};
  return e.backing;
}

size_t Passthrough::open_backings() {
  std::lock_guard lock(mutex_);
  size_t n = 0;
  for (const auto& [inode, e] : backings_) n += e.backing.id > 0;
  return n;
}

void Passthrough::release(const Inode* inode) {
  std::lock_guard lock(mutex_);
  auto it = backings_.find(inode);
  if (it == backings_.end() || --it->second.opens > 0) return;
  if (it->second.backing.id > 0) {
    auto id = static_cast<uint32_t>(it->second.backing.id);
    ::ioctl(io_.dev_fd(), kBackingClose, &id);
  }
  backings_.erase(it);
}

}  // namespace portalfs::fuse
