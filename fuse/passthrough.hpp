// SPDX-License-Identifier: MIT
#pragma once

// Kernel passthrough (Linux 6.9+): the reads, writes and mmaps of an open file go straight to
// the backing file in the kernel, at the speed of the backing filesystem, with no request to
// the daemon. libfuse 3.14 predates it, so this file does the two things it lacks:
//   - INIT: the daemon reads the kernel's INIT request and patches its own reply (FUSE_PASSTHROUGH
//     in flags2, max_stack_depth 1) through libfuse's custom I/O hooks (install());
//   - OPEN/CREATE: a backing file is registered with the FUSE_DEV_IOC_BACKING_OPEN ioctl and its
//     id patched into the open reply (FOPEN_PASSTHROUGH + backing_id) as libfuse sends it.
//
// The kernel allows one backing file per FUSE inode while any file of it is open, and every
// open of such an inode must then be a passthrough open: backings are counted per Inode and
// closed with the last open.
//
// The hooks are on for every session (they only watch when passthrough is off), with plain
// splice for libfuse's splice paths, and tell ThreadSanitizer how the kernel orders requests.
//
// Only files of data views pass through. A data view is its app's own and never narrowed;
// a shared view's grant can turn read-only or be revoked with --force, which must stop the
// reads and writes of files already open, and only the daemon can refuse those.

#include <fcntl.h>
#include <sys/uio.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <unordered_map>

#define FUSE_USE_VERSION FUSE_MAKE_VERSION(3, 12)
#include <fuse_lowlevel.h>

namespace portalfs::fuse {

struct Inode;

class Passthrough {
 public:
  explicit Passthrough(bool wanted) : wanted_(wanted) {}

  /// Puts the hooks on `se` (after fuse_session_mount, before the loop). The session's
  /// userdata must be the Filesystem that owns this object.
  void install(fuse_session* se);
  /// Whether the kernel accepted passthrough for this connection.
  [[nodiscard]] bool active() const { return active_.load(std::memory_order_acquire); }

  /// What an open of a file may pass through: id 0 means nothing (the daemon serves it).
  struct Backing {
    int32_t id = 0;
    bool readable = false, writable = false;
  };
  /// A file the caller offers as the backing: its fd (-1: none) and access mode (O_ACCMODE).
  struct Candidate {
    int fd = -1;
    int accmode = O_RDONLY;
  };
  /// Counts one open of `inode` and returns its backing. The first open registers the file
  /// `open_backing()` offers (the caller keeps its fd, the kernel takes its own reference);
  /// the later ones share it, as the kernel requires. No-op while inactive.
  Backing acquire(const Inode* inode, const std::function<Candidate()>& open_backing);
  /// Drops the count of one open counted by acquire(); the last closes the backing.
  void release(const Inode* inode);

  /// Inodes open with a backing file now.
  size_t open_backings();

  /// Marks the next open or create reply this thread sends as a passthrough of `backing`
  /// (`direct_io`: reads and writes still come to the daemon, only mmap passes through).
  static void mark_next_reply(int32_t backing, bool direct_io);

 private:
  static ssize_t read_hook(int fd, void* buf, size_t len, void* userdata);
  static ssize_t writev_hook(int fd, struct iovec* iov, int count, void* userdata);

  const bool wanted_;
  std::atomic<bool> active_{false};
  std::atomic<bool> kernel_offers_{false};
  std::atomic<uint64_t> init_unique_{0};
  int dev_fd_ = -1;  // the session's /dev/fuse fd (the ioctls go there)

  struct Entry {
    Backing backing;
    uint32_t opens;
  };
  std::mutex mutex_;
  std::unordered_map<const Inode*, Entry> backings_;
};

}  // namespace portalfs::fuse
