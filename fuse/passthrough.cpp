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

bool Passthrough::written_through(const Inode* inode) {
  std::lock_guard lock(mutex_);
  auto it = backings_.find(inode);
  if (it != backings_.end() && it->second.backing.writable) return true;
  auto closed = closed_writers_.find(inode);
  return closed != closed_writers_.end() && std::chrono::steady_clock::now() - closed->second < kCloseEcho;
}

void Passthrough::release(const Inode* inode) {
  std::lock_guard lock(mutex_);
  auto it = backings_.find(inode);
  if (it == backings_.end() || --it->second.opens > 0) return;
  if (it->second.backing.id > 0) {
    auto id = static_cast<uint32_t>(it->second.backing.id);
    ::ioctl(io_.dev_fd(), kBackingClose, &id);
  }
  if (it->second.backing.writable) note_closed_writer(inode);
  backings_.erase(it);
}

void Passthrough::note_closed_writer(const Inode* inode) {
  const auto now = std::chrono::steady_clock::now();
  std::erase_if(closed_writers_, [&](const auto& c) { return now - c.second >= kCloseEcho; });
  closed_writers_[inode] = now;
}

}  // namespace portalfs::fuse
