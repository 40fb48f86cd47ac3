// SPDX-License-Identifier: MIT
#pragma once

// Kernel passthrough (Linux 6.9+): the reads, writes and mmaps of an open file go straight to
// the backing file in the kernel, at the speed of the backing filesystem, with no request to
// the daemon. A backing file is registered with the FUSE_DEV_IOC_BACKING_OPEN ioctl and its id
// sent in the open reply (SessionIo patches it in: libfuse 3.14 predates passthrough).
//
// The kernel allows one backing file per FUSE inode while any file of it is open, and every
// open of such an inode must then be a passthrough open: backings are counted per Inode and
// closed with the last open.
//
// Files of data views pass through whole. A shared view's grant can turn read-only or be
// revoked with --force, which must stop the writes of files already open, and only the
// daemon can refuse those: there, only reads and mmaps pass through (ops_file.cpp).

#include <fcntl.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "fuse/session_io.hpp"

namespace portalfs::fuse {

struct Inode;

class Passthrough {
 public:
  explicit Passthrough(const SessionIo& io) : io_(io) {}

  /// Whether the kernel accepted passthrough for this connection.
  [[nodiscard]] bool active() const { return io_.active(); }

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
  /// Locking: the first open of an inode registers its backing without the table's mutex (an
  /// openat and an ioctl); other opens of that inode wait for it meanwhile, so that one inode
  /// can't get two backings (the kernel would refuse the second open). The mutex is the
  /// innermost lock and held across no syscall.
  /// `writer`: the thread that opens it for writing (0: a reader, or nobody's), whose writes
  /// written_by() recognises.
  Backing acquire(const Inode* inode, pid_t writer, const std::function<Candidate()>& open_backing);
  /// Drops the count of one open counted by acquire(); the last closes the backing.
  void release(const Inode* inode);

  /// Whether a change of `inode`'s backing file made by process `pid` (as fanotify names it:
  /// the thread group) is the app's own: the inode is open with a backing file the kernel
  /// writes to, or its last such open closed less than a second ago, and `pid` opened it for
  /// writing (pid 0, unknown: anyone). Such writes and that close reach the host watch as
  /// changes made on the host (events.cpp), though the app's view heard them already. A
  /// passthrough write is made in the writer's own task (fs/backing-file.c,
  /// backing_file_write_iter calls vfs_iter_write there), so fanotify names the app; a host
  /// process writing the file meanwhile is another pid, and its view hears of it. The close
  /// may come before or after the daemon hears of it (the kernel drops the backing file as it
  /// releases the FUSE file, and sends the RELEASE request after).
  bool written_by(const Inode* inode, pid_t pid);
  /// Whether `inode` is open with a backing file now.
  bool has_backing(const Inode* inode);

  /// Inodes open with a backing file now.
  size_t open_backings();

 private:
  const SessionIo& io_;

  struct Entry {
    Backing backing;
    uint32_t opens = 0;
    std::vector<pid_t> writers;  // threads that opened it for writing (as requests name them)
    bool registering = false;    // its first open is registering the backing (acquire)
  };
  struct Closed {
    std::chrono::steady_clock::time_point at;
    std::vector<pid_t> writers;
  };
  static constexpr std::chrono::seconds kCloseEcho{1};
  /// Under mutex_: remembers that `inode`'s last writable open just closed (written_through()).
  void note_closed_writer(const Inode* inode, std::vector<pid_t> writers);

  /// The first open's registration (openat, BACKING_OPEN): a backing, or none (id 0).
  Backing register_backing(const std::function<Candidate()>& open_backing);

  std::mutex mutex_;
  std::condition_variable registered_;  // an entry stopped registering
  std::unordered_map<const Inode*, Entry> backings_;
  // Writable backings released less than kCloseEcho ago (older ones are pruned on insert), and
  // the order they were noted in (a backing closed again is in it twice; the older is stale).
  std::unordered_map<const Inode*, Closed> closed_writers_;
  std::deque<std::pair<std::chrono::steady_clock::time_point, const Inode*>> closed_order_;
};

}  // namespace portalfs::fuse
