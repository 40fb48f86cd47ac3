// SPDX-License-Identifier: MIT
#pragma once

// State shared by several portalfsd nodes over one storage root (a GlusterFS volume: README
// "Over GlusterFS", docs/scale-out.md). A layer over the node's own StateStore, which stays the
// node's record (and the only one without --shared-state):
//
//   <storage-root>/.portalfs-cluster/state.N.json  {"generation": N, "state": <state document>}
//   <storage-root>/.portalfs-cluster/lock           fcntl (POSIX) write-locked around every change
//
// Each generation is a new file, written once and never changed (the newest 16 are kept). A
// document replaced in place, or renamed over, is read stale through another client's caches
// (the kernel keeps a name's old inode and size for the client's entry and attribute
// timeouts: an empty or old document, seen in testing); a name never used before can't be.
//
// What is shared: apps, shares, share trashes and quotas (what every node must serve alike).
// What stays the node's: its attachments (containers run on one node), its removals in progress
// and the stores it found (each node's own client mount). merge() puts the two together.
//
// Protocol (Manager::handle): every request that may change the state takes the lock, reads
// the shared document and, when its generation is newer than the node's, adopts it before the
// verb runs; a change is written back with generation + 1 before the lock is released. So two
// nodes changing state at once are serialised by the lock, and each builds on the other's
// change: no update is lost. Generation N is published with link(), which never replaces:
// should the lock ever fail, the second writer of N is refused (compare-and-swap by name). POSIX locks are the volume's (GlusterFS's locks translator holds
// them for every client); a node that dies loses its lock with its connection. Between
// requests each node looks for generation N+1 every second (Manager's shared-state
// watcher), so a change made on one node is served on the others within about that second
// plus the client's metadata cache (the tests hold it to 5 s).

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>

#include "common/unique_fd.hpp"
#include "mountmgr/state.hpp"

namespace portalfs::mountmgr {

class SharedState {
 public:
  /// Opens (making it when missing) `<storage_root>/.portalfs-cluster`. Throws StateError.
  explicit SharedState(const std::string& storage_root);

  /// Holds the cluster-wide lock while it lives.
  class Lock {
   public:
    explicit Lock(int fd) : fd_(fd) {}
    Lock(Lock&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
    Lock& operator=(Lock&&) = delete;
    ~Lock();

   private:
    int fd_;
  };
  /// Waits for the lock (at most 30 s: a node holds it for one request; longer means it hangs).
  /// Throws StateError when it can't be had.
  Lock lock();

  struct Snapshot {
    uint64_t generation = 0;
    State state;
  };
  /// The shared document, or nullopt when there is none yet. Throws StateError on a bad one.
  std::optional<Snapshot> read() const;
  /// The newest generation (0: no document), for the watcher: usually one lookup; never throws.
  uint64_t generation() const;
  /// Publishes the shared parts of `state` as `generation` (temp file, fsync, link). Call with
  /// the lock held. Throws StateError (also when that generation exists: another node's).
  void write(uint64_t generation, const State& state);

  [[nodiscard]] std::string path() const { return dir_; }

 private:
  static std::string name_of(uint64_t generation);
  bool exists(uint64_t generation) const;
  uint64_t newest_listed() const;  // from the directory's listing

  mutable std::atomic<uint64_t> last_seen_{0};  // a hint: the watcher and requests both move it
  std::string dir_;
  common::UniqueFd dir_fd_;
  common::UniqueFd lock_fd_;
};

/// `local` with the shared parts (apps, shares, share trashes, quotas) taken from `shared`.
State merge(const State& local, const State& shared);

}  // namespace portalfs::mountmgr
