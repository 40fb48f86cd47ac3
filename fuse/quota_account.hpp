// SPDX-License-Identifier: MIT
#pragma once

// Quotas the daemon enforces itself (issue #16), where the storage root's file system has no
// project quotas (mountmgr/quota.hpp is the kernel's way, preferred where it exists).
//
// A limited view (ViewSpec::quotas) is served without passthrough, so every change of its
// files comes here first. Each op that changes usage asks its view's QuotaCounter before it
// acts (policy::quota_admits decides), and settles afterwards with what it really did:
//  - write, copy_file_range: a SizeChange reserves the bytes that fit (a write that would
//    cross the limit is cut short exactly at it; the next one gets EDQUOT), and settles with
//    the file's size after the write. Nothing already written is touched.
//  - truncate (setattr, O_TRUNC), fallocate: all or nothing, the same way.
//  - create, mknod, mkdir, symlink: one inode, taken before the syscall, given back if it fails.
//  - unlink, rmdir, a rename that replaces: a Removal gives back the entry's bytes and inode
//    when its last name goes (a file with more names keeps counting once).
//  - link and a rename within a view change nothing; across views they fail with EXDEV.
// An app's limit within a share (key "APP:SHARE") counts what that app created there: each
// file's provenance (trusted.portalfs.created_by, policy/provenance.hpp) says whose count it is
// in, whichever app changes it later. So an op on a file of a shared view answers to up to two
// counters (QuotaCounters): the share's, and its creator's in that share; a new entry to the
// maker's. All of them must admit a change; a write is cut at the tightest.
// Two writers can't overshoot together: the counter takes and checks under one mutex, and the
// ops on one file are serialised by a stripe lock (QuotaAccounts::file_lock), so the size read
// before an op and the one after belong to that op alone. Locks are taken in one order: the
// first walks waited for, the counters' step locks (by key), the file's lock, a counter's mutex.
//
// The count survives nothing: at start (and when a limit is first set) a background thread
// walks the target's backing directories once (progress in `portalctl status`), and from then
// on each op updates it. So usage is exact after any restart, kill -9 included, with no file
// to keep in step. While a target's first walk runs, ops that would change its usage wait for
// it (reads, lookups and listings do not, nor do other targets): a count begun with changes
// racing the walk could count a file twice or not at all.
//
// Changes made on the host directly in the backing directories come from the host watch
// (host_watch.hpp; portalfsd's own changes are not reported there, so nothing counts twice):
// each marks the limits whose trees hold the directory changed, and the walking thread counts
// those again in the background, a burst of changes once (kRecountDelay), and takes the new
// count as the usage. An overflow of the watch's queue recounts every limit.
//
// A recount does not hold the ops while it walks, and loses none of them. A walk is not a
// snapshot: an op that lands in a part already walked would be missed by it, one in a part not
// walked yet is seen. So the recount keeps, beside its count, the directories it has listed
// (walked) and the inodes it has counted (seen), and each op that changes usage tells it what
// it did (QuotaCounter::resized, removed, entered): a size change of a seen file, the removal of
// a seen entry's last name, a new name in a walked directory (made, linked or moved there) is
// added to the recount as it is to the live count; the rest the walk will see for itself. For
// that to be exact an op must fall wholly before or after each step of the walk: the walk lists
// and counts one directory at a time under its counter's step lock (exclusive), which each op
// holds shared from before it looks to after it has told the recount (QuotaSteps). An op so
// waits at most for the listing of one directory, never for the walk (bench/README.md has the
// figures). The walk counts every inode once (seen), whatever name it meets it by; it descends
// into a directory once (walked); a directory moved into a walked one is walked after the tree
// (entered queues it), one made there is empty (walked at once). At its end the recount takes
// the step lock once more, so no op is between looking and telling, and its count replaces
// the live one. Host changes during a walk mark the limit again: the next recount has them.
//
// Not seen: files opened through passthrough before their view got a limit (until closed).

#include <pthread.h>
#include <sys/types.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "common/unique_fd.hpp"
#include "policy/quota.hpp"

namespace portalfs::fuse {

/// A reader-writer lock that lets a waiting writer in before new readers (a recount's walk, the
/// writer, is not starved by a stream of ops), non-recursive. Usable with std::shared_lock.
class StepLock {
 public:
  StepLock();
  ~StepLock();
  StepLock(const StepLock&) = delete;
  StepLock& operator=(const StepLock&) = delete;
  void lock();
  void unlock();
  void lock_shared();
  void unlock_shared();

 private:
  pthread_rwlock_t lock_;
};

/// An inode: (st_dev, st_ino).
using FileId = std::pair<dev_t, ino_t>;
struct FileIdHash {
  size_t operator()(const FileId& id) const {
    return std::hash<uint64_t>{}(static_cast<uint64_t>(id.second) ^ (static_cast<uint64_t>(id.first) << 40));
  }
};

/// The count and limits of one limited app or share, shared by every view with its key.
class QuotaCounter {
 public:
  explicit QuotaCounter(std::string key);
  [[nodiscard]] const std::string& key() const { return key_; }
  /// An APP:SHARE counter's app: only entries it created count. "" for the others.
  [[nodiscard]] const std::string& creator() const { return creator_; }

  void set_limits(const policy::QuotaLimits& limits);
  [[nodiscard]] policy::QuotaLimits limits() const;

  struct Usage {
    uint64_t bytes = 0;
    uint64_t inodes = 0;
    bool counted = false;  // the first walk is done; until then bytes/inodes are what it saw so far
    uint64_t walked = 0;   // entries the first walk has seen
  };
  [[nodiscard]] Usage usage() const;

  /// Waits for the first walk, then takes `bytes` and `inodes` (negative: gives back). 0, or
  /// EDQUOT when it would pass a limit (then nothing is taken).
  int charge(int64_t bytes, int64_t inodes);
  /// Waits for the first walk, then takes as many of `size` bytes written at `offset` of a file
  /// of `file_size` as fit (policy::writable_within); returns how many (0: none fit).
  uint64_t charge_write(uint64_t file_size, uint64_t offset, uint64_t size);
  /// Waits for the first walk (an op that moves or links names must not race it either).
  void wait();
  /// Corrects the count by what an op really did beyond what it took; never refused.
  void adjust(int64_t bytes, int64_t inodes);
  /// The bytes and inodes left below the limits (UINT64_MAX: no limit). Does not wait.
  [[nodiscard]] std::pair<uint64_t, uint64_t> room() const;

  // The first walk (QuotaAccounts' thread).
  void walked(uint64_t bytes, uint64_t inodes, uint64_t entries);  // adds what it saw so far
  void counted();                                                  // done: ops may go on

  /// Held shared by an op that changes usage (QuotaSteps), exclusive by a recount's walk for
  /// one directory at a time (quota_account.hpp, top).
  [[nodiscard]] StepLock& steps() const { return steps_; }

  // What an op did, for a recount running (nothing when none is), under steps() shared:
  /// The size of regular file `file` changed by `bytes`.
  void resized(const FileId& file, int64_t bytes);
  /// The last name of `entry` (of `bytes` bytes) is gone.
  void removed(const FileId& entry, int64_t bytes);
  /// `entry_fd` (an O_PATH fd will do) has a new name in directory `dir`: made (`made`), linked
  /// or moved there.
  void entered(const FileId& dir, int entry_fd, bool made);

  // A recount (QuotaAccounts' thread): begin, walk (recount_tree), end.
  void begin_recount();
  /// Under steps() exclusive: lists directory `dir_fd` (of file system `dev`) into the recount,
  /// unless it was listed already; its subdirectories' names in `subdirs`.
  void recount_dir(int dir_fd, dev_t dev, std::vector<std::string>& subdirs);
  /// A directory moved into a walked one, to walk after the tree (-1: none left).
  common::UniqueFd next_moved_dir();
  /// Under steps() exclusive: takes the recount's count as the usage (`apply`) or drops it
  /// (stopped). False, and nothing done, while moved directories are left to walk.
  bool end_recount(bool apply);

 private:
  void wait_counted(std::unique_lock<std::mutex>& lock);
  bool counts(int entry_fd) const;  // whether an entry counts here (creator_'s, for APP:SHARE)
  struct Recount {
    std::unordered_set<FileId, FileIdHash> walked;  // directories listed
    std::unordered_set<FileId, FileIdHash> seen;    // inodes counted
    int64_t bytes = 0;
    int64_t inodes = 0;
    std::vector<common::UniqueFd> moved;  // directories moved into walked ones: to walk
  };
  mutable StepLock steps_;
  const std::string key_;
  std::string creator_;
  mutable std::mutex mutex_;  // guards the rest; never held across a syscall
  std::condition_variable done_;
  policy::QuotaLimits limits_;
  int64_t bytes_ = 0;   // signed: an op may give back before a racing adjust() lands
  int64_t inodes_ = 0;
  bool counted_ = false;
  uint64_t walked_ = 0;
  std::unique_ptr<Recount> recount_;  // while one runs
};

/// The counters one op answers to (quota_account.hpp, top): none, one or two.
using QuotaCounters = std::vector<std::shared_ptr<QuotaCounter>>;

/// The step locks of one op's counters, held shared (quota_account.hpp, top): taken after their
/// first walks are done, in key order.
class QuotaSteps {
 public:
  QuotaSteps() = default;
  explicit QuotaSteps(const QuotaCounters& counters);

 private:
  std::vector<std::shared_lock<StepLock>> locks_;
};


/// Takes `bytes` and `inodes` from every counter, or from none: 0 or EDQUOT.
int charge_all(const QuotaCounters& counters, int64_t bytes, int64_t inodes);

/// The counters, by key, and the thread that walks for their first count.
class QuotaAccounts {
 public:
  QuotaAccounts() = default;
  ~QuotaAccounts();
  QuotaAccounts(const QuotaAccounts&) = delete;
  QuotaAccounts& operator=(const QuotaAccounts&) = delete;

  /// The counter of `key`, or nullptr. Takes a shared lock only.
  [[nodiscard]] std::shared_ptr<QuotaCounter> find(const std::string& key) const;

  /// The limited views now served: key -> (limits, their backing directories' fds). Counters
  /// of keys gone are dropped (a limit set again later counts afresh); a new key's counter is
  /// made and its walk queued (dup()s of the fds); a known key gets its new limits.
  void update(const std::map<std::string, std::pair<policy::QuotaLimits, std::vector<int>>>& limited);

  /// Starts the walking thread (from the FUSE init, in the process that serves: portalfsd
  /// forks after set_views). Walks queued before wait for it.
  void start();

  /// A change made on the host in directory `dir_fd` (any fd of it): the limits whose trees
  /// hold it are counted again, in the background. -1: the changes overflowed, all are.
  void host_changed(int dir_fd);
  /// How long the walker waits after a host change before it counts again (more changes
  /// meanwhile cost one walk).
  static constexpr std::chrono::milliseconds kRecountDelay{200};
  /// Recounts done after host changes (for tests and status).
  [[nodiscard]] uint64_t recounts() const { return recounts_.load(); }

  /// "" when every count is done, else what is being counted: for `portalctl status`.
  [[nodiscard]] std::string progress() const;

  /// The lock of one backing file (dev, ino): ops that change its size or remove it hold it
  /// from the size read before to the settling after.
  std::mutex& file_lock(dev_t dev, ino_t ino);

 private:
  using Roots = std::shared_ptr<const std::vector<common::UniqueFd>>;
  struct Walk {
    std::shared_ptr<QuotaCounter> counter;
    Roots roots;
  };
  struct Target {
    std::shared_ptr<QuotaCounter> counter;
    Roots roots;                     // the backing directories (dup'd fds)
    std::vector<std::string> paths;  // theirs, to match a host change's directory
  };
  void run(const std::stop_token& stop);
  void recount_dirty(const std::stop_token& stop);

  mutable std::shared_mutex mutex_;  // guards counters_, queue_, dirty_, started_
  std::map<std::string, Target> counters_;
  std::vector<Walk> queue_;
  std::set<std::string> dirty_;  // keys to count again (host changes)
  std::atomic<uint64_t> recounts_ = 0;
  bool started_ = false;
  std::condition_variable_any queued_;
  std::array<std::mutex, 64> file_locks_;
  std::jthread walker_;  // last: stopped and joined first
};

/// One op that changes the size of a file of a limited view: holds its counters' step locks
/// and the file's lock from the size read before (here) to the settling after (the destructor,
/// which corrects the count by the size the file really has then, and tells a recount). With
/// no counter (an unlimited view) it does nothing.
class SizeChange {
 public:
  /// `fd`: the file (an O_PATH fd will do).
  SizeChange(QuotaAccounts& accounts, QuotaCounters counters, int fd);
  ~SizeChange();
  SizeChange(const SizeChange&) = delete;
  SizeChange& operator=(const SizeChange&) = delete;

  /// How many of `size` bytes written at `offset` fit (all of them without a limit); 0: none,
  /// the op answers EDQUOT.
  uint64_t write(uint64_t offset, uint64_t size);
  /// 0, or EDQUOT when a file of `new_size` bytes would pass the limit.
  int resize(uint64_t new_size);
  /// fallocate up to `end`: 0, EDQUOT, or the refusal of policy::quota_fallocate for a
  /// `keep_size` one.
  int allocate(bool keep_size, uint64_t end);

 private:
  QuotaSteps steps_;        // first: released last
  QuotaCounters counters_;  // empty: nothing to do
  std::unique_lock<std::mutex> lock_;
  int fd_ = -1;
  FileId id_;
  uint64_t before_ = 0;
  int64_t taken_ = 0;  // by each of counters_
};

/// The removal of one entry of a limited view (unlink, rmdir, a rename that replaces it):
/// made before the syscall (it waits for the first walk and reads what the entry counts for),
/// done() after it succeeded gives that back (and tells a recount). Nothing without a counter
/// or an entry. Holds the counters' step locks from here to its end.
class Removal {
 public:
  Removal(QuotaAccounts& accounts, QuotaCounters counters, int dir_fd, const char* name);
  /// A rename's: nothing when the entry replaced is the one moved (`from_fd`, `from_name`).
  /// The caller holds the step locks (of all the view's counters: QuotaSteps).
  Removal(QuotaAccounts& accounts, QuotaCounters counters, int dir_fd, const char* name, int from_fd,
          const char* from_name);
  void done();

 private:
  void init(QuotaAccounts& accounts, QuotaCounters counters, int dir_fd, const char* name);
  QuotaSteps steps_;  // first: released last
  QuotaCounters counters_;
  FileId id_;
  std::unique_lock<std::mutex> lock_;
  int64_t bytes_ = 0;
  int64_t inodes_ = 0;
};

/// Counts `dir_fd`'s tree into `counter` (regular files' sizes once per inode, every entry
/// one inode, not the directory itself; for an APP:SHARE counter only the entries its app
/// created; never crossing into another file system, never
/// following a symlink). `linked` holds the files with more than one name seen so far (of all
/// the target's trees), so each is counted once. Stops early when `stop` is requested.
void count_tree(int dir_fd, QuotaCounter& counter, std::set<std::pair<dev_t, ino_t>>& linked,
                const std::stop_token& stop);
/// Counts `roots` (each directory once) into `counter`, as the first walk does.
void count_roots(const std::vector<common::UniqueFd>& roots, QuotaCounter& counter, const std::stop_token& stop);
/// Counts `roots` again into the live `counter`, ops going on (quota_account.hpp, top), and
/// takes that count as its usage. False when `stop` stopped it (the count is left as it was).
bool recount_roots(const std::vector<common::UniqueFd>& roots, QuotaCounter& counter, const std::stop_token& stop);

}  // namespace portalfs::fuse
