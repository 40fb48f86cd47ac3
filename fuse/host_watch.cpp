// SPDX-License-Identifier: MIT
#include "fuse/host_watch.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/fanotify.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <vector>

#include "common/log.hpp"

namespace portalfs::fuse {

namespace {
constexpr uint64_t kMask = FAN_CREATE | FAN_DELETE | FAN_RENAME | FAN_MODIFY | FAN_CLOSE_WRITE |
                           FAN_ATTRIB | FAN_ONDIR;

std::pair<int, int> fsid_key(const __kernel_fsid_t& f) { return {f.val[0], f.val[1]}; }
}  // namespace

namespace {
std::optional<std::pair<int, int>> fsid_of(int dir) {
  struct statfs sf {};
  if (::fstatfs(dir, &sf) != 0) return std::nullopt;
  __kernel_fsid_t fsid;
  std::memcpy(&fsid, &sf.f_fsid, sizeof(fsid));
  return fsid_key(fsid);
}

std::optional<uint64_t> mount_id(int dir) {
  struct statx sx {};
  if (::statx(dir, "", AT_EMPTY_PATH, STATX_MNT_ID, &sx) != 0 || !(sx.stx_mask & STATX_MNT_ID)) return std::nullopt;
  return sx.stx_mnt_id;
}
}  // namespace

std::string HostWatch::watch(int dir) {
  struct stat st {};
  auto key = fsid_of(dir);
  if (!key || ::fstat(dir, &st) != 0) return std::strerror(errno);
  std::lock_guard lock(mutex_);
  if (auto alias = aliases_.find(*key); alias != aliases_.end()) key = alias->second;
  if (auto it = fsids_.find(*key); it != fsids_.end()) {
    if (std::find(it->second.begin(), it->second.end(), st.st_dev) == it->second.end()) it->second.push_back(st.st_dev);
    return "";
  }
  if (auto err = init_locked(); !err.empty()) return err;
  auto marked = mark_locked(dir, *key);
  if (!marked) return std::string("fanotify_mark: ") + std::strerror(errno);
  if (*marked != *key) aliases_[*key] = *marked;
  auto& devs = fsids_[*marked];
  if (std::find(devs.begin(), devs.end(), st.st_dev) == devs.end()) devs.push_back(st.st_dev);
  return "";
}

// A btrfs subvolume has an fsid of its own, and the kernel marks a whole file system only from a
// directory with the file system's fsid (EXDEV otherwise: fanotify_user.c, fanotify_test_fsid).
// So the mark is made from the nearest directory above on the same mount that has it; the events
// of every subvolume then come with that fsid, and their handles open from any of them.
std::optional<std::pair<int, int>> HostWatch::mark_locked(int dir, std::pair<int, int> key) {
  const auto mount = mount_id(dir);
  common::UniqueFd up;
  int at = dir;
  for (int depth = 0; depth < 64; ++depth) {
    if (fsids_.count(key)) return key;  // marked from another subvolume already
    if (::fanotify_mark(fan_.get(), FAN_MARK_ADD | FAN_MARK_FILESYSTEM, kMask, at, nullptr) == 0) return key;
    if (errno != EXDEV || !mount) return std::nullopt;
    common::UniqueFd parent(::openat(at, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    const int saved = errno;
    if (!parent || mount_id(parent.get()) != mount) {  // the top of the mount: not another file system's
      errno = parent ? EXDEV : saved;
      return std::nullopt;
    }
    auto parent_key = fsid_of(parent.get());
    if (!parent_key) return std::nullopt;
    key = *parent_key;
    up = std::move(parent);
    at = up.get();
  }
  errno = EXDEV;
  return std::nullopt;
}

std::string HostWatch::init_locked() {
  if (fan_) return "";
  int fd = ::fanotify_init(FAN_CLASS_NOTIF | FAN_REPORT_DFID_NAME | FAN_CLOEXEC | FAN_NONBLOCK,
                           O_RDONLY | O_CLOEXEC | O_LARGEFILE);
  if (fd < 0) return std::string("fanotify_init: ") + std::strerror(errno);
  fan_.reset(fd);
  return "";
}

void HostWatch::start(MountOf mount_of, Sink sink) {
  stop();
  std::lock_guard lock(mutex_);
  if (auto err = init_locked(); !err.empty()) {
    common::log(common::LogLevel::warn, "changes made on the host reach the views at their "
                                        "timeouts only: " + err);
    return;
  }
  int w = ::eventfd(0, EFD_CLOEXEC);
  if (w < 0) return;
  wake_.reset(w);
  mount_of_ = std::move(mount_of);
  sink_ = std::move(sink);
  self_ = ::getpid();
  thread_ = std::thread([this] { run(); });
}

void HostWatch::stop() {
  if (!thread_.joinable()) return;
  uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(wake_.get(), &one, sizeof(one));
  thread_.join();
}

void HostWatch::run() {
  alignas(fanotify_event_metadata) char buf[16384];
  bool busy = false;  // the last read found events: more are likely on their way
  for (;;) {
    pollfd fds[2] = {{fan_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
    // Most events of a busy file system are portalfsd's own (its ops through the views; the
    // provenance attribute it sets on each file it makes), each read only to be dropped below.
    // Waiting kCoalesce before the next read lets them gather, and the kernel merges those on
    // one file: one wake-up per burst, not one per op, for a few milliseconds of latency.
    if (busy && ::poll(fds + 1, 1, static_cast<int>(kCoalesce.count())) > 0) return;
    if (::poll(fds, 2, -1) < 0 && errno != EINTR) return;
    if (fds[1].revents) return;
    ssize_t len = ::read(fan_.get(), buf, sizeof(buf));
    busy = len > 0;
    if (len <= 0) continue;
    // Events with names are 4-byte aligned in the buffer, not as their metadata needs (8):
    // each is copied to an aligned place first.
    for (ssize_t off = 0; off + static_cast<ssize_t>(FAN_EVENT_METADATA_LEN) <= len;) {
      fanotify_event_metadata head;
      std::memcpy(&head, buf + off, sizeof(head));
      if (head.event_len < FAN_EVENT_METADATA_LEN || off + head.event_len > len) break;
      alignas(fanotify_event_metadata) char event[sizeof(buf)];
      std::memcpy(event, buf + off, head.event_len);
      off += head.event_len;
      try {
        report(reinterpret_cast<const fanotify_event_metadata*>(event));
      } catch (const std::exception& e) {
        common::log(common::LogLevel::error, std::string("host change lost: ") + e.what());
      }
    }
  }
}

bool HostWatch::resolve(const fanotify_event_info_fid* fid, common::UniqueFd& dir, dev_t& dev,
                        ino_t& ino, std::string& name) {
  std::vector<dev_t> devs;
  {
    std::lock_guard lock(mutex_);
    auto it = fsids_.find(fsid_key(fid->fsid));
    if (it == fsids_.end()) return false;
    devs = it->second;
  }
  std::shared_ptr<const common::UniqueFd> mount;
  for (dev_t d : devs) {
    if ((mount = mount_of_(d))) break;
  }
  if (!mount) return false;
  auto* fh = reinterpret_cast<file_handle*>(const_cast<unsigned char*>(fid->handle));
  int fd = ::open_by_handle_at(mount->get(), fh, O_PATH | O_CLOEXEC);
  if (fd < 0) return false;  // gone already, or not reachable from the served tree
  dir.reset(fd);
  struct stat st {};
  if (::fstat(fd, &st) != 0) return false;
  dev = st.st_dev;
  ino = st.st_ino;
  name = reinterpret_cast<const char*>(fh->f_handle + fh->handle_bytes);
  return true;
}

void HostWatch::report(const fanotify_event_metadata* m) {
  if (m->vers != FANOTIFY_METADATA_VERSION) return;
  if (m->mask & FAN_Q_OVERFLOW) {
    HostChange c;
    c.kind = HostChange::overflow;
    sink_(c);
    return;
  }
  if (m->pid == self_) return;  // portalfsd's own change: the op that made it told the views
  HostChange c;
  c.is_dir = m->mask & FAN_ONDIR;
  c.pid = m->pid;
  bool have_old = false, have_new = false;
  for (auto off = m->metadata_len; off + sizeof(fanotify_event_info_header) <= m->event_len;) {
    const auto* hdr = reinterpret_cast<const fanotify_event_info_header*>(
        reinterpret_cast<const char*>(m) + off);
    if (hdr->len == 0) break;
    const auto* fid = reinterpret_cast<const fanotify_event_info_fid*>(hdr);
    if (hdr->info_type == FAN_EVENT_INFO_TYPE_DFID_NAME || hdr->info_type == FAN_EVENT_INFO_TYPE_OLD_DFID_NAME) {
      have_old = resolve(fid, c.dir, c.dev, c.ino, c.name);
    } else if (hdr->info_type == FAN_EVENT_INFO_TYPE_NEW_DFID_NAME) {
      have_new = resolve(fid, c.to_dir, c.to_dev, c.to_ino, c.to_name);
    }
    off += hdr->len;
  }
  // One event may stand for several changes of one entry (the kernel merges them): reported
  // in the order they must have happened.
  const auto send = [&](HostChange::Kind kind) {
    c.kind = kind;
    sink_(c);
  };
  if (m->mask & FAN_RENAME) {
    // A rename whose other side is not served is a create or a delete here.
    if (have_old && have_new) send(HostChange::moved);
    else if (have_new) {
      c.dir = std::move(c.to_dir);
      c.dev = c.to_dev;
      c.ino = c.to_ino;
      c.name = c.to_name;
      send(HostChange::created);
    } else if (have_old) {
      send(HostChange::deleted);
    }
    return;
  }
  if (!have_old) return;
  if (m->mask & FAN_CREATE) send(HostChange::created);
  if (m->mask & FAN_MODIFY) send(HostChange::modified);
  if (m->mask & FAN_ATTRIB) send(HostChange::attrib);
  if (m->mask & FAN_CLOSE_WRITE) send(HostChange::closed);
  if (m->mask & FAN_DELETE) send(HostChange::deleted);
}

}  // namespace portalfs::fuse
