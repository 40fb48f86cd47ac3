// SPDX-License-Identifier: MIT
#pragma once

// The inode table: every FUSE inode the kernel knows, keyed by (view, st_dev, st_ino), and a
// bounded cache of their O_PATH fds.
//
// Identity. A backed inode keeps its backing file's identity as a file handle
// (name_to_handle_at), never as a path and not as a permanently open fd: these machines cap
// open files at 20,000 and a view may hold millions of files. Its O_PATH fd lives in an LRU
// cache of at most `fd_cache_capacity` entries and is re-opened with open_by_handle_at (only
// handles this process made itself, relative to the view's root fd) when evicted. A file
// system that gives no handle (or one larger than Handle::kMax) gets its fd pinned instead.
//
// Locking (take in this order, never hold one across a syscall or a fuse_reply_*):
//   1. table_mutex_  the key map, nlookup, the sibling chains
//   2. cache_mutex_  the LRU list, fd, pins
// An Inode's identity fields are immutable after creation and read without a lock. The kernel
// never sends FORGET for an inode while one of its requests is in flight, so an Inode* taken
// from a request stays valid until that request replies (as in libfuse's passthrough_hp).
// After the reply it may come at once, while the handler still holds an FdRef: forget() then
// only erases the inode, and the last FdRef frees it.
//
// Siblings: inodes with the same (st_dev, st_ino) in different views (two apps sharing a
// directory) are linked in a ring, so a change through one view can invalidate the others.

#include <sys/stat.h>
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "common/result.hpp"
#include "common/unique_fd.hpp"

namespace portalfs::fuse {

using ViewId = uint32_t;
inline constexpr ViewId kNoView = 0;  // synthetic inodes

/// A file handle small enough to keep inline (ext4: 8 bytes, tmpfs: 12, xfs/btrfs <= 24).
struct Handle {
  static constexpr int kMax = 24;
  int32_t type = 0;
  uint8_t size = 0;  // 0: no handle, the fd is pinned for the inode's life
  unsigned char bytes[kMax] = {};
};

struct Inode {
  // Identity: immutable after creation.
  ViewId view = kNoView;
  dev_t dev = 0;
  ino_t ino = 0;
  mode_t type = 0;  // S_IFMT bits
  Handle handle;
  // Told to the kernel with the node id (the inode's address): the pair is unique for the
  // daemon's life, so a file handle of an inode freed since (events.cpp) can't open another
  // that got the same address.
  uint32_t generation = 0;

  // Guarded by InodeTable::table_mutex_.
  uint64_t nlookup = 0;
  // Ring of inodes with the same (dev, ino) in other views. Written under the table mutex;
  // read without it only as a hint ("has siblings?") on hot paths.
  std::atomic<Inode*> next_sibling{this};

  // Guarded by InodeTable::cache_mutex_. The fd is taken out under the lock and closed after
  // it is released (never a syscall under a table lock).
  common::UniqueFd fd;  // cached O_PATH fd, invalid when evicted
  uint32_t pins = 0;    // FdRefs alive; a pinned fd is never evicted
  uint32_t opens = 0;   // open file handles: the fd stays while the file is open
  bool forgotten = false;  // erased from the table while pinned: the last unpin frees it
  // Immutable after creation: counted in its app's share (inode_shares.hpp) until it is erased.
  bool charged = false;
  Inode* lru_prev = nullptr;
  Inode* lru_next = nullptr;
};
// The table's memory per inode (bench/README: bytes per inode); an owned fd costs no more
// than an int.
static_assert(sizeof(common::UniqueFd) == sizeof(int));
static_assert(sizeof(Inode) <= 112);

class InodeTable;
class InodeShares;
class InodeCharge;

/// A pinned O_PATH fd of an inode; unpins on destruction.
class FdRef {
 public:
  FdRef() = default;
  FdRef(InodeTable* table, Inode* inode, int fd) : table_(table), inode_(inode), fd_(fd) {}
  FdRef(FdRef&& o) noexcept : table_(o.table_), inode_(o.inode_), fd_(o.fd_) { o.table_ = nullptr; }
  FdRef& operator=(FdRef&&) = delete;
  FdRef(const FdRef&) = delete;
  ~FdRef();
  [[nodiscard]] int get() const { return fd_; }

 private:
  InodeTable* table_ = nullptr;
  Inode* inode_ = nullptr;
  int fd_ = -1;
};

class InodeTable {
 public:
  /// Without `handles` (a daemon that may not open_by_handle_at: privileges.hpp) every fd is
  /// pinned for its inode's life, as on a file system that gives no handles. With `shares`
  /// each new inode is charged to its view's app, and refused past the app's share.
  explicit InodeTable(size_t fd_cache_capacity, bool handles = true, InodeShares* shares = nullptr)
      : shares_(shares), capacity_(fd_cache_capacity), handles_(handles) {}
  ~InodeTable();
  InodeTable(const InodeTable&) = delete;
  InodeTable& operator=(const InodeTable&) = delete;

  /// The inode for (view, st), with nlookup raised by one. `fd` is an O_PATH fd of the file;
  /// the table takes it (it becomes the cached fd of a new inode, or is closed). For a new
  /// inode the handle is taken from `fd`. Returns the inode, or an errno: ENFILE when a new
  /// inode would be more than its app's share (the kernel's inodes of that app are not
  /// forgotten yet). With `charge` (taken before the file was made) a new inode takes that
  /// charge instead of one of its own.
  common::Result<Inode*> find_or_insert(ViewId view, const struct stat& st, int fd, InodeCharge* charge = nullptr);

  /// Lowers nlookup by n; at zero the inode is erased by key and freed (its fd closed).
  void forget(Inode* inode, uint64_t n);

  /// Pins and returns the inode's O_PATH fd, re-opening it from its handle through
  /// `mount_fd` (any fd on the same file system) when it was evicted.
  common::Result<FdRef> fd(Inode* inode, int mount_fd);

  /// Marks the inode open (its fd is kept) / closed again.
  void opened(Inode* inode);
  void closed(Inode* inode);

  /// The other views' inodes of the same backing file (empty for most inodes; that case
  /// takes no lock), with their views: read here, under the lock, as one may be forgotten
  /// and freed as soon as it is released.
  struct Sibling {
    Inode* inode;
    ViewId view;
    uint32_t generation;
    bool operator==(const Sibling&) const = default;
  };
  std::vector<Sibling> siblings(const Inode* inode);
  /// The inodes of backing file (dev, ino) in the views other than `except`.
  std::vector<Sibling> inodes_of(dev_t dev, ino_t ino, ViewId except);
  /// Whether `inode` (an address that may be freed: never read through) is still in the table
  /// with `generation`, as an inode of backing file (dev, ino).
  bool live(const Inode* inode, uint32_t generation, dev_t dev, ino_t ino);
  static bool has_siblings(const Inode* inode) {
    return inode->next_sibling.load(std::memory_order_relaxed) != inode;
  }

  /// Every inode of a view (for invalidation when the view is revoked).
  std::vector<Inode*> inodes_of(ViewId view);

  /// Closes the cached fds of a view's inodes (not those pinned by an op right now, of open
  /// files, or without a handle): its store went away or came back on another mount, and
  /// they must re-open by handle through the view's new root. Returns how many it closed.
  size_t drop_fds(ViewId view);

  struct Stats {
    size_t inodes = 0;
    size_t cached_fds = 0;
    size_t capacity = 0;
  };
  Stats stats();

 private:
  friend class FdRef;
  struct BackingKey {
    dev_t dev;
    ino_t ino;
    bool operator==(const BackingKey&) const = default;
  };
  struct BackingHash {
    size_t operator()(const BackingKey& k) const noexcept {
      return std::hash<uint64_t>()(static_cast<uint64_t>(k.ino) * 0x9E3779B97F4A7C15ull ^ k.dev);
    }
  };

  using Fds = std::vector<common::UniqueFd>;  // taken out under a lock, closed after it

  void unpin(Inode* inode);
  // table_mutex_ held: the inode of `view` in the sibling ring that starts at `head`, or null.
  static Inode* in_ring(Inode* head, ViewId view);
  // table_mutex_ held: a known inode looked up again; it adopts `fd` if its own was evicted,
  // else `fd` joins `to_close`.
  void relookup_locked(Inode* inode, common::UniqueFd fd, Fds& to_close);
  // cache_mutex_ held: puts inode at the LRU front with fd; the fds it evicted join `evicted`.
  void cache_insert_locked(Inode* inode, common::UniqueFd fd, Fds& evicted);
  void lru_unlink_locked(Inode* inode);
  void lru_push_front_locked(Inode* inode);

  InodeShares* const shares_;  // null: nothing is charged
  std::mutex table_mutex_;  // Must be acquired *before* cache_mutex_.
  // One entry per backing file: the first inode of its sibling ring.
  std::unordered_map<BackingKey, Inode*, BackingHash> by_backing_;
  size_t inode_count_ = 0;

  std::mutex cache_mutex_;
  const size_t capacity_;
  const bool handles_;
  size_t cached_ = 0;
  Inode* lru_head_ = nullptr;  // most recently used
  Inode* lru_tail_ = nullptr;
};

}  // namespace portalfs::fuse
