// SPDX-License-Identifier: MIT
#include "fuse/passthrough.hpp"

#include <sys/ioctl.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <fstream>
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

// The thread group of thread `tid` (the kernel names a request's thread; fanotify, its group):
// its Tgid line in /proc, or `tid` itself if that can't be read (it has ended).
pid_t thread_group(pid_t tid) {
  std::ifstream status("/proc/" + std::to_string(tid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Tgid:", 0) == 0) return static_cast<pid_t>(std::strtol(line.c_str() + 5, nullptr, 10));
  }
  return tid;
}
}  // namespace

Passthrough::Backing Passthrough::acquire(const Inode* inode, pid_t writer,
                                          const std::function<Candidate()>& open_backing) {
  if (!io_.active()) return {};
  // Outside the lock (it is the innermost, above): fanotify names a thread group.
  const pid_t group = writer > 0 ? thread_group(writer) : 0;
  std::lock_guard lock(mutex_);
  auto [it, first] = backings_.try_emplace(inode, Entry{{}, 0, {}});
  Entry& e = it->second;
  ++e.opens;
  if (group > 0 && std::find(e.writers.begin(), e.writers.end(), group) == e.writers.end()) {
    e.writers.push_back(group);
  }
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

bool Passthrough::written_by(const Inode* inode, pid_t pid) {
  const auto among = [pid](const std::vector<pid_t>& writers) {
    return pid <= 0 || std::find(writers.begin(), writers.end(), pid) != writers.end();
  };
  std::lock_guard lock(mutex_);
  auto it = backings_.find(inode);
  if (it != backings_.end() && it->second.backing.writable && among(it->second.writers)) return true;
  auto closed = closed_writers_.find(inode);
  return closed != closed_writers_.end() && std::chrono::steady_clock::now() - closed->second.at < kCloseEcho &&
         among(closed->second.writers);
}

bool Passthrough::has_backing(const Inode* inode) {
  std::lock_guard lock(mutex_);
  auto it = backings_.find(inode);
  return it != backings_.end() && it->second.backing.id > 0;
}

void Passthrough::release(const Inode* inode) {
  std::lock_guard lock(mutex_);
  auto it = backings_.find(inode);
  if (it == backings_.end() || --it->second.opens > 0) return;
  if (it->second.backing.id > 0) {
    auto id = static_cast<uint32_t>(it->second.backing.id);
    ::ioctl(io_.dev_fd(), kBackingClose, &id);
  }
  if (it->second.backing.writable) note_closed_writer(inode, std::move(it->second.writers));
  backings_.erase(it);
}

void Passthrough::note_closed_writer(const Inode* inode, std::vector<pid_t> writers) {
  const auto now = std::chrono::steady_clock::now();
  std::erase_if(closed_writers_, [&](const auto& c) { return now - c.second.at >= kCloseEcho; });
  closed_writers_[inode] = Closed{now, std::move(writers)};
}

}  // namespace portalfs::fuse
