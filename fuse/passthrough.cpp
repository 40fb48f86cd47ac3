// SPDX-License-Identifier: MIT
#include "fuse/passthrough.hpp"

#include <sys/ioctl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
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

// Whether thread `tid` (the kernel names a request's thread) belongs to thread group `pid`
// (fanotify names a change's group): asked only when a change is heard, not at every open. A
// thread that has ended since is nobody's: its group's change is then heard once more.
bool in_group(pid_t tid, pid_t pid) {
  if (tid == pid) return true;
  struct stat st {};
  const std::string task = "/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid);
  return ::stat(task.c_str(), &st) == 0;
}
}  // namespace

Passthrough::Backing Passthrough::acquire(const Inode* inode, pid_t writer,
                                          const std::function<Candidate()>& open_backing) {
  if (!io_.active()) return {};
  std::unique_lock lock(mutex_);
  // Another first open of this inode is registering its backing: this one shares it.
  registered_.wait(lock, [&] {
    auto it = backings_.find(inode);
    return it == backings_.end() || !it->second.registering;
  });
  auto [it, first] = backings_.try_emplace(inode);
  Entry& e = it->second;  // stays valid: an element of an unordered_map does not move
  ++e.opens;
  if (writer > 0 && std::find(e.writers.begin(), e.writers.end(), writer) == e.writers.end()) {
    e.writers.push_back(writer);
  }
  if (!first) return e.backing;
  // The first open registers, without the lock: opens of other inodes go on meanwhile. Nobody
  // erases the entry before this open's RELEASE, which comes after it returned.
  e.registering = true;
  lock.unlock();
  const Backing got = register_backing(open_backing);
  lock.lock();
  e.backing = got;
  e.registering = false;
  registered_.notify_all();
  return got;
}

Passthrough::Backing Passthrough::register_backing(const std::function<Candidate()>& open_backing) {
  // An inode that could not get a backing is served by the daemon until its last close (the
  // kernel refuses passthrough opens of an inode open in its page-cache mode).
  const Candidate file = open_backing();
  if (file.fd < 0) return {};
  BackingMap map{file.fd, 0, 0};
  const int id = ::ioctl(io_.dev_fd(), kBackingOpen, &map);
  if (id <= 0) {
    common::log(common::LogLevel::debug,
                std::string("passthrough: backing refused: ") + std::strerror(errno));
    return {};
  }
  return {id, file.accmode != O_WRONLY, file.accmode != O_RDONLY};
}

size_t Passthrough::open_backings() {
  std::lock_guard lock(mutex_);
  size_t n = 0;
  for (const auto& [inode, e] : backings_) n += e.backing.id > 0;
  return n;
}

bool Passthrough::written_by(const Inode* inode, pid_t pid) {
  std::vector<pid_t> writers;
  {
    std::lock_guard lock(mutex_);
    auto it = backings_.find(inode);
    if (it != backings_.end() && it->second.backing.writable) writers = it->second.writers;
    auto closed = closed_writers_.find(inode);
    if (closed != closed_writers_.end() && std::chrono::steady_clock::now() - closed->second.at < kCloseEcho) {
      writers.insert(writers.end(), closed->second.writers.begin(), closed->second.writers.end());
    } else if (it == backings_.end() || !it->second.backing.writable) {
      return false;
    }
  }
  if (pid <= 0) return true;
  // Outside the lock (it is the innermost, above): a stat in /proc per writer.
  return std::any_of(writers.begin(), writers.end(), [pid](pid_t tid) { return in_group(tid, pid); });
}

bool Passthrough::has_backing(const Inode* inode) {
  std::lock_guard lock(mutex_);
  auto it = backings_.find(inode);
  return it != backings_.end() && it->second.backing.id > 0;
}

void Passthrough::release(const Inode* inode) {
  uint32_t id = 0;
  {
    std::lock_guard lock(mutex_);
    auto it = backings_.find(inode);
    if (it == backings_.end() || --it->second.opens > 0) return;
    if (it->second.backing.id > 0) id = static_cast<uint32_t>(it->second.backing.id);
    if (it->second.backing.writable) note_closed_writer(inode, std::move(it->second.writers));
    backings_.erase(it);
  }
  // Outside the lock: the kernel let go of this backing as it released the inode's last file
  // (before sending this RELEASE), and a new open meanwhile registers one of its own.
  if (id > 0) ::ioctl(io_.dev_fd(), kBackingClose, &id);
}

void Passthrough::note_closed_writer(const Inode* inode, std::vector<pid_t> writers) {
  const auto now = std::chrono::steady_clock::now();
  // The oldest first: pruning costs what expired, not a walk of every recent close (that walk,
  // at every writable close under this lock, was 15 % of the daemon's CPU with 200 clients).
  while (!closed_order_.empty() && now - closed_order_.front().first >= kCloseEcho) {
    auto [at, old] = closed_order_.front();
    closed_order_.pop_front();
    auto c = closed_writers_.find(old);
    if (c != closed_writers_.end() && c->second.at == at) closed_writers_.erase(c);  // not closed again since
  }
  closed_writers_[inode] = Closed{now, std::move(writers)};
  closed_order_.emplace_back(now, inode);
}

}  // namespace portalfs::fuse
