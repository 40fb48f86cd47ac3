// SPDX-License-Identifier: MIT
#pragma once

// Notifier: sends the kernel the invalidations of sibling views from a thread of its own.
//
// A worker must never wait for an invalidation. The kernel takes the sibling's directory lock
// (entries) or page locks (data) to invalidate, and those may be held by a request of the
// sibling view that waits for a free worker: with every worker blocked that way, nothing
// moves (two apps churning in one shared directory did exactly that). Workers queue the
// invalidation after their reply and go back to serving; this one thread may block, and is
// released as soon as a worker answers the request that holds the lock.
//
// Invalidations name an inode by its node id, which is the daemon's Inode address, and by
// what tells whether that address still names the same inode when the invalidation goes out:
// the kernel may forget the inode meanwhile and the address be reused for another one (a file
// where a directory was: the kernel then answers ENOTDIR, and libfuse logs it). The `live`
// check given to start() skips those; one the kernel forgets between the check and the send
// is answered with ENOENT and ignored.

#include "fuse/fuse_api.hpp"

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>

namespace portalfs::fuse {

/// An inode as an invalidation names it: its node id, and its generation and backing file
/// (the key under which the inode table finds it), for the `live` check.
struct NodeRef {
  fuse_ino_t ino = 0;
  uint32_t generation = 0;
  dev_t dev = 0;
  ino_t backing = 0;
};

class Notifier {
 public:
  Notifier() = default;
  /// Stops, waiting as long as it takes: a joinable std::thread must not be destroyed.
  ~Notifier();
  Notifier(const Notifier&) = delete;
  Notifier& operator=(const Notifier&) = delete;

  /// Starts sending to `se` (a thread), stopping a running one first (waiting as long as it
  /// takes). Invalidations queued before are dropped.
  /// `live` tells whether a NodeRef still names its inode (none: always).
  /// `at_exit` runs on the thread before it ends (while the mount still answers).
  using Live = std::function<bool(const NodeRef&)>;
  void start(fuse_session* se, Live live = {}, std::function<void()> at_exit = {});
  /// Drops what is queued, stops taking more and joins the thread once the invalidation being
  /// sent is done. Returns false if that one is still blocked after `patience`: it waits for a
  /// lock held by a request nobody serves any more (the loop ended with the mount in use).
  /// Abort the connection, then call stop() again.
  bool stop(std::chrono::milliseconds patience = std::chrono::milliseconds(2000));

  /// Attributes (off = -1) or data from `off` (len 0: to the end) of `ino`.
  void inval_inode(const NodeRef& node, off_t off, off_t len);
  /// inval_inode(), then waits until it was sent, for `patience` at most: false if it was not
  /// (not running, or still queued behind others, or blocked in the kernel). For a worker
  /// whose answer must come after the invalidation, yet which may not wait for the kernel's
  /// locks for long (above): at worst it answers `patience` late, and the invalidation
  /// follows.
  bool inval_inode_wait(const NodeRef& node, off_t off, off_t len, std::chrono::milliseconds patience);
  /// The name `name` in the directory `parent` (and the directory's attributes).
  void inval_entry(const NodeRef& parent, std::string name);

  /// What to run when invalidations were lost (a queue overflowed): it must drop everything
  /// the kernel may have cached. `limit`: invalidations queued at most; past that they are
  /// dropped and `flush` runs instead (0: no limit). Before start().
  void on_overflow(std::function<void()> flush, size_t limit);
  /// Some queue lost changes (this one, the daemon's events, the host watch's): runs the flush
  /// on this thread before anything queued, once for every call made before it starts.
  void overflowed();
  /// How many times the flush ran.
  size_t flushes() const { return flushes_.load(std::memory_order_relaxed); }

  /// Runs `work` on this thread, in order with the invalidations (events.cpp: the echoes that
  /// raise inotify events in sibling views are syscalls into the mount, which may block).
  /// false: not running, `work` was dropped.
  bool run_later(std::function<void()> work);
  /// The thread's id, as the kernel puts it in the requests this thread causes (0: none).
  pid_t tid() const { return tid_.load(std::memory_order_relaxed); }

  /// Waits until everything queued so far was sent (tests; returns false on timeout).
  bool wait_idle(std::chrono::milliseconds timeout);

 private:
  struct Item {
    NodeRef node;
    off_t off = 0, len = 0;
    std::string name;  // non-empty: an entry
    std::function<void()> work;  // set: run it instead
  };
  void run();
  bool post(Item item);
  /// stop() until it succeeds, with a warning each time it did not.
  void stop_waiting();

  std::mutex mutex_;
  std::condition_variable wake_, idle_;
  std::deque<Item> queue_;
  fuse_session* se_ = nullptr;  // null: not running, posts are dropped
  bool stopping_ = false, busy_ = false;
  bool flush_pending_ = false;  // overflowed(): flush_ runs next
  std::function<void()> flush_;
  size_t limit_ = 0;
  bool exited_ = true;  // run() has ended (or never started)
  std::thread thread_;
  Live live_;
  std::function<void()> at_exit_;
  std::atomic<pid_t> tid_{0};
  std::atomic<size_t> flushes_{0};
};

}  // namespace portalfs::fuse
