// SPDX-License-Identifier: MIT
#include "fuse/quota_account.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <functional>

#include "common/log.hpp"
#include "policy/provenance.hpp"

namespace portalfs::fuse {

// ---- StepLock, QuotaSteps ----

StepLock::StepLock() {
  pthread_rwlockattr_t attr;
  ::pthread_rwlockattr_init(&attr);
  ::pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  ::pthread_rwlock_init(&lock_, &attr);
  ::pthread_rwlockattr_destroy(&attr);
}
StepLock::~StepLock() { ::pthread_rwlock_destroy(&lock_); }
void StepLock::lock() { ::pthread_rwlock_wrlock(&lock_); }
void StepLock::unlock() { ::pthread_rwlock_unlock(&lock_); }
void StepLock::lock_shared() { ::pthread_rwlock_rdlock(&lock_); }
void StepLock::unlock_shared() { ::pthread_rwlock_unlock(&lock_); }

QuotaSteps::QuotaSteps(const QuotaCounters& counters) {
  if (counters.empty()) return;
  // First walks before any step lock: the thread that walks them also recounts, and takes the
  // step locks exclusive.
  for (const auto& c : counters) c->wait();
  std::vector<QuotaCounter*> order;
  for (const auto& c : counters) order.push_back(c.get());
  std::sort(order.begin(), order.end(), [](const QuotaCounter* a, const QuotaCounter* b) { return a->key() < b->key(); });
  order.erase(std::unique(order.begin(), order.end()), order.end());
  for (QuotaCounter* c : order) locks_.emplace_back(c->steps());
}

// ---- QuotaCounter ----

QuotaCounter::QuotaCounter(std::string key) : key_(std::move(key)) {
  const auto target = policy::parse_quota_key(key_);
  if (target && target->kind == policy::QuotaKind::app_share) creator_ = target->app;
}

void QuotaCounter::set_limits(const policy::QuotaLimits& limits) {
  std::lock_guard lock(mutex_);
  limits_ = limits;
}

policy::QuotaLimits QuotaCounter::limits() const {
  std::lock_guard lock(mutex_);
  return limits_;
}

namespace {
uint64_t clamp(int64_t v) { return v > 0 ? static_cast<uint64_t>(v) : 0; }

// A listing of the directory `dir_fd` (an O_PATH fd will do), on a new fd; null if it can't.
DIR* list_dir(int dir_fd) {
  const int fd = ::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return nullptr;
  DIR* dir = ::fdopendir(fd);
  if (!dir) ::close(fd);
  return dir;
}
}  // namespace

QuotaCounter::Usage QuotaCounter::usage() const {
  std::lock_guard lock(mutex_);
  return {clamp(bytes_), clamp(inodes_), counted_, walked_};
}

void QuotaCounter::wait_counted(std::unique_lock<std::mutex>& lock) {
  done_.wait(lock, [&] { return counted_; });
}

int QuotaCounter::charge(int64_t bytes, int64_t inodes) {
  std::unique_lock lock(mutex_);
  wait_counted(lock);
  if (int err = policy::quota_admits(clamp(bytes_), clamp(inodes_), bytes, inodes, limits_)) return err;
  bytes_ += bytes;
  inodes_ += inodes;
  return 0;
}

uint64_t QuotaCounter::charge_write(uint64_t file_size, uint64_t offset, uint64_t size) {
  std::unique_lock lock(mutex_);
  wait_counted(lock);
  const uint64_t room = policy::room_left(clamp(bytes_), limits_.bytes);
  const uint64_t n = policy::writable_within(file_size, offset, size, room);
  // What the write adds beyond the end of the file (a rewrite below it costs nothing).
  const uint64_t end = offset + n;
  bytes_ += static_cast<int64_t>(end > file_size ? end - file_size : 0);
  return n;
}

void QuotaCounter::wait() {
  std::unique_lock lock(mutex_);
  wait_counted(lock);
}

void QuotaCounter::adjust(int64_t bytes, int64_t inodes) {
  std::lock_guard lock(mutex_);
  bytes_ += bytes;
  inodes_ += inodes;
}

std::pair<uint64_t, uint64_t> QuotaCounter::room() const {
  std::lock_guard lock(mutex_);
  return {policy::room_left(clamp(bytes_), limits_.bytes), policy::room_left(clamp(inodes_), limits_.inodes)};
}

void QuotaCounter::walked(uint64_t bytes, uint64_t inodes, uint64_t entries) {
  std::lock_guard lock(mutex_);
  bytes_ += static_cast<int64_t>(bytes);
  inodes_ += static_cast<int64_t>(inodes);
  walked_ += entries;
}

namespace {
// Whether the entry at `path` was made by `app` (its provenance; a symlink's own).
bool path_made_by(const std::string& path, const std::string& app) {
  char buf[256];
  const ssize_t len = ::lgetxattr(path.c_str(), policy::kCreatedByXattr, buf, sizeof(buf));
  return len >= 0 && std::string_view(buf, static_cast<size_t>(len)) == app;
}
}  // namespace

bool QuotaCounter::counts(int entry_fd) const {
  // /proc/self/fd/N of an O_PATH fd of a symlink is the symlink itself.
  return creator_.empty() || path_made_by("/proc/self/fd/" + std::to_string(entry_fd), creator_);
}

void QuotaCounter::resized(const FileId& file, int64_t bytes) {
  std::lock_guard lock(mutex_);
  if (recount_ && recount_->seen.contains(file)) recount_->bytes += bytes;
}

void QuotaCounter::removed(const FileId& entry, int64_t bytes) {
  std::lock_guard lock(mutex_);
  if (!recount_) return;
  // Forgotten: the file system may give its inode number to the next file made.
  recount_->walked.erase(entry);
  if (recount_->seen.erase(entry) == 0) return;  // not counted: nor will it be
  recount_->bytes -= bytes;
  recount_->inodes -= 1;
}

void QuotaCounter::entered(const FileId& dir, int entry_fd, bool made) {
  {
    std::lock_guard lock(mutex_);
    if (!recount_ || !recount_->walked.contains(dir)) return;  // the walk will list it there
  }
  struct stat st {};
  if (::fstat(entry_fd, &st) != 0) return;
  const bool here = counts(entry_fd);
  const FileId id{st.st_dev, st.st_ino};
  std::lock_guard lock(mutex_);
  if (!recount_) return;
  if (S_ISDIR(st.st_mode) && !recount_->walked.contains(id)) {
    // A new directory is empty: nothing below it to walk. One moved here from a part not
    // walked yet would never be met by the walk: it is walked after the tree.
    if (made) {
      recount_->walked.insert(id);
    } else if (common::UniqueFd dup(::fcntl(entry_fd, F_DUPFD_CLOEXEC, 0)); dup) {
      recount_->moved.push_back(std::move(dup));
    }
  }
  if (here && recount_->seen.insert(id).second) {
    recount_->bytes += S_ISREG(st.st_mode) ? static_cast<int64_t>(st.st_size) : 0;
    recount_->inodes += 1;
  }
}

void QuotaCounter::begin_recount() {
  std::lock_guard lock(mutex_);
  recount_ = std::make_unique<Recount>();
}

void QuotaCounter::recount_dir(int dir_fd, dev_t dev, std::vector<std::string>& subdirs) {
  struct stat self {};
  if (::fstat(dir_fd, &self) != 0) return;
  const FileId me{self.st_dev, self.st_ino};
  {
    std::lock_guard lock(mutex_);
    if (!recount_ || recount_->walked.contains(me)) return;  // met by another name already
  }
  std::vector<std::pair<FileId, int64_t>> found;
  {
    DIR* dir = list_dir(dir_fd);
    if (!dir) return;
    const std::string proc = "/proc/self/fd/" + std::to_string(dir_fd) + "/";
    while (const dirent* e = ::readdir(dir)) {
      const std::string_view name(e->d_name);
      if (name == "." || name == "..") continue;
      struct stat st {};
      if (::fstatat(dir_fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
      if (st.st_dev != dev) continue;  // a mount point: another file system's
      if (S_ISDIR(st.st_mode)) subdirs.emplace_back(name);
      if (!creator_.empty() && !path_made_by(proc + e->d_name, creator_)) continue;
      found.emplace_back(FileId{st.st_dev, st.st_ino}, S_ISREG(st.st_mode) ? static_cast<int64_t>(st.st_size) : 0);
    }
    ::closedir(dir);
  }
  std::lock_guard lock(mutex_);
  if (!recount_) return;
  recount_->walked.insert(me);
  for (const auto& [id, bytes] : found) {
    if (!recount_->seen.insert(id).second) continue;  // another name of a file counted
    recount_->bytes += bytes;
    recount_->inodes += 1;
  }
}

common::UniqueFd QuotaCounter::next_moved_dir() {
  std::lock_guard lock(mutex_);
  if (!recount_ || recount_->moved.empty()) return common::UniqueFd();
  common::UniqueFd fd = std::move(recount_->moved.back());
  recount_->moved.pop_back();
  return fd;
}

bool QuotaCounter::end_recount(bool apply) {
  std::lock_guard lock(mutex_);
  if (!recount_) return true;
  if (apply && !recount_->moved.empty()) return false;  // still to walk
  if (apply) {
    bytes_ = recount_->bytes;
    inodes_ = recount_->inodes;
  }
  recount_.reset();
  return true;
}

void QuotaCounter::counted() {
  {
    std::lock_guard lock(mutex_);
    counted_ = true;
  }
  done_.notify_all();
}

int charge_all(const QuotaCounters& counters, int64_t bytes, int64_t inodes) {
  for (size_t i = 0; i < counters.size(); ++i) {
    if (int err = counters[i]->charge(bytes, inodes)) {
      while (i-- > 0) counters[i]->adjust(-bytes, -inodes);
      return err;
    }
  }
  return 0;
}

// ---- SizeChange, Removal ----

SizeChange::SizeChange(QuotaAccounts& accounts, QuotaCounters counters, int fd) : fd_(fd) {
  if (counters.empty()) return;
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return;
  steps_ = QuotaSteps(counters);
  lock_ = std::unique_lock(accounts.file_lock(st.st_dev, st.st_ino));
  // Read again under the lock: the size another op left, now settled.
  if (::fstat(fd, &st) != 0) return;
  // A file with no name left (unlinked while open) is in no tree: it counts for nothing.
  if (st.st_nlink == 0) return;
  before_ = static_cast<uint64_t>(st.st_size);
  id_ = {st.st_dev, st.st_ino};
  counters_ = std::move(counters);
}

SizeChange::~SizeChange() {
  if (counters_.empty()) return;
  struct stat st {};
  if (::fstat(fd_, &st) != 0) return;  // keeps what it took: the count errs on the full side
  const int64_t now = st.st_nlink == 0 ? 0 : static_cast<int64_t>(st.st_size) - static_cast<int64_t>(before_);
  for (const auto& c : counters_) {
    c->adjust(now - taken_, 0);
    c->resized(id_, now);
  }
}

uint64_t SizeChange::write(uint64_t offset, uint64_t size) {
  if (counters_.empty()) return size;
  // What a write of n bytes adds beyond the end of the file (a rewrite below it costs nothing).
  auto added = [&](uint64_t n) -> int64_t { return offset + n > before_ ? static_cast<int64_t>(offset + n - before_) : 0; };
  // Each counter takes what fits of what the ones before let through; then those give back
  // the part the tightest did not.
  uint64_t n = size;
  std::vector<int64_t> took(counters_.size());
  for (size_t i = 0; i < counters_.size(); ++i) {
    n = counters_[i]->charge_write(before_, offset, n);
    took[i] = added(n);
  }
  for (size_t i = 0; i < counters_.size(); ++i) counters_[i]->adjust(added(n) - took[i], 0);
  taken_ += added(n);
  return n;
}

int SizeChange::resize(uint64_t new_size) {
  if (counters_.empty()) return 0;
  const int64_t delta = static_cast<int64_t>(new_size) - static_cast<int64_t>(before_);
  if (int err = charge_all(counters_, delta, 0)) return err;
  taken_ += delta;
  return 0;
}

int SizeChange::allocate(bool keep_size, uint64_t end) {
  if (counters_.empty()) return 0;
  if (int err = policy::quota_fallocate(keep_size)) return err;
  return resize(std::max(before_, end));
}

Removal::Removal(QuotaAccounts& accounts, QuotaCounters counters, int dir_fd, const char* name, int from_fd,
                 const char* from_name) {
  if (counters.empty()) return;
  struct stat moved {}, replaced {};
  if (::fstatat(from_fd, from_name, &moved, AT_SYMLINK_NOFOLLOW) == 0 &&
      ::fstatat(dir_fd, name, &replaced, AT_SYMLINK_NOFOLLOW) == 0 && moved.st_dev == replaced.st_dev &&
      moved.st_ino == replaced.st_ino) {
    return;  // rename(2) of a name onto another name of the same file does nothing
  }
  init(accounts, std::move(counters), dir_fd, name);
}

Removal::Removal(QuotaAccounts& accounts, QuotaCounters counters, int dir_fd, const char* name) {
  if (counters.empty()) return;
  steps_ = QuotaSteps(counters);  // waits for the first walks
  init(accounts, std::move(counters), dir_fd, name);
}

void Removal::init(QuotaAccounts& accounts, QuotaCounters counters, int dir_fd, const char* name) {
  for (const auto& c : counters) c->wait();
  struct stat st {};
  if (::fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return;  // the syscall will say why
  lock_ = std::unique_lock(accounts.file_lock(st.st_dev, st.st_ino));
  if (::fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return;
  // A file with other names still counts, once: its last name takes it away.
  if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) return;
  bytes_ = S_ISREG(st.st_mode) ? static_cast<int64_t>(st.st_size) : 0;
  inodes_ = 1;
  id_ = {st.st_dev, st.st_ino};
  counters_ = std::move(counters);
}

void Removal::done() {
  for (const auto& c : counters_) {
    c->adjust(-bytes_, -inodes_);
    c->removed(id_, bytes_);
  }
}

// ---- the walk ----

namespace {

// Whether entry `name` of `dir_fd` was made by `app` (its provenance; a symlink's own).
bool made_by(int dir_fd, const char* name, const std::string& app) {
  return path_made_by("/proc/self/fd/" + std::to_string(dir_fd) + "/" + name, app);
}

// Counts one directory's entries, then descends into its subdirectories (after closing the
// directory stream, so the walk holds one fd per level of depth, not two).
struct TreeCounter {
  QuotaCounter& counter;
  std::set<std::pair<dev_t, ino_t>>& linked;
  const std::stop_token& stop;
  dev_t dev = 0;

  void count(int dir_fd) {
    std::vector<std::string> subdirs;
    uint64_t bytes = 0, inodes = 0;
    {
      DIR* dir = list_dir(dir_fd);
      if (!dir) return;
      while (const dirent* e = ::readdir(dir)) {
        const std::string_view name(e->d_name);
        if (name == "." || name == "..") continue;
        struct stat st {};
        if (::fstatat(dir_fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;  // gone since
        if (st.st_dev != dev) continue;  // a mount point: another file system's
        if (S_ISDIR(st.st_mode)) subdirs.emplace_back(name);
        if (!counter.creator().empty() && !made_by(dir_fd, e->d_name, counter.creator())) continue;
        if (S_ISREG(st.st_mode) && st.st_nlink > 1 && !linked.insert({st.st_dev, st.st_ino}).second) continue;
        ++inodes;
        if (S_ISREG(st.st_mode)) bytes += static_cast<uint64_t>(st.st_size);
      }
      ::closedir(dir);
    }
    counter.walked(bytes, inodes, inodes);
    for (const auto& name : subdirs) {
      if (stop.stop_requested()) return;
      common::UniqueFd sub(::openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (sub) count(sub.get());
    }
  }
};

}  // namespace

void count_tree(int dir_fd, QuotaCounter& counter, std::set<std::pair<dev_t, ino_t>>& linked,
                const std::stop_token& stop) {
  struct stat st {};
  if (::fstat(dir_fd, &st) != 0) return;
  TreeCounter{counter, linked, stop, st.st_dev}.count(dir_fd);
}

void count_roots(const std::vector<common::UniqueFd>& roots, QuotaCounter& counter, const std::stop_token& stop) {
  std::set<std::pair<dev_t, ino_t>> linked, walked;
  for (const auto& root : roots) {
    struct stat st {};
    // Every view of a share has the share's directory as its root: walked once.
    if (!root || ::fstat(root.get(), &st) != 0 || !walked.insert({st.st_dev, st.st_ino}).second) continue;
    count_tree(root.get(), counter, linked, stop);
  }
}

namespace {
// A recount's walk of one tree: each directory listed under the counter's step lock, alone.
struct TreeRecounter {
  QuotaCounter& counter;
  const std::stop_token& stop;
  dev_t dev = 0;

  void count(int dir_fd) {
    std::vector<std::string> subdirs;
    {
      std::unique_lock step(counter.steps());
      counter.recount_dir(dir_fd, dev, subdirs);
    }
    for (const auto& name : subdirs) {
      if (stop.stop_requested()) return;
      common::UniqueFd sub(::openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (sub) count(sub.get());
    }
  }
};

void recount_tree(int dir_fd, QuotaCounter& counter, const std::stop_token& stop) {
  struct stat st {};
  if (::fstat(dir_fd, &st) != 0) return;
  TreeRecounter{counter, stop, st.st_dev}.count(dir_fd);
}
}  // namespace

bool recount_roots(const std::vector<common::UniqueFd>& roots, QuotaCounter& counter, const std::stop_token& stop) {
  counter.begin_recount();
  for (const auto& root : roots) {
    if (root) recount_tree(root.get(), counter, stop);  // a root met twice is listed once
  }
  while (!stop.stop_requested()) {
    while (auto moved = counter.next_moved_dir()) recount_tree(moved.get(), counter, stop);
    std::unique_lock step(counter.steps());
    if (stop.stop_requested()) break;
    if (counter.end_recount(true)) return true;
  }
  std::unique_lock step(counter.steps());
  counter.end_recount(false);
  return false;
}

// ---- QuotaAccounts ----

QuotaAccounts::~QuotaAccounts() {
  if (walker_.joinable()) {
    walker_.request_stop();
    queued_.notify_all();
    walker_.join();
  }
  // Ops still waiting for a count that will not come (the daemon stops) go on.
  std::unique_lock lock(mutex_);
  for (auto& w : queue_) w.counter->counted();
}

namespace {
std::string fd_path(int fd) {
  char buf[PATH_MAX];
  const ssize_t n = ::readlink(("/proc/self/fd/" + std::to_string(fd)).c_str(), buf, sizeof(buf));
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}
bool below(const std::string& path, const std::string& root) {
  return !root.empty() && path.starts_with(root) && (path.size() == root.size() || path[root.size()] == '/' || root == "/");
}
}  // namespace

std::shared_ptr<QuotaCounter> QuotaAccounts::find(const std::string& key) const {
  std::shared_lock lock(mutex_);
  auto it = counters_.find(key);
  return it == counters_.end() ? nullptr : it->second.counter;
}

void QuotaAccounts::host_changed(int dir_fd) {
  const std::string path = dir_fd < 0 ? std::string() : fd_path(dir_fd);
  if (dir_fd >= 0 && path.empty()) return;
  std::unique_lock lock(mutex_);
  bool marked = false;
  for (const auto& [key, t] : counters_) {
    if (dir_fd >= 0 && std::none_of(t.paths.begin(), t.paths.end(), [&](const auto& r) { return below(path, r); })) continue;
    marked |= dirty_.insert(key).second;
  }
  lock.unlock();
  if (marked) queued_.notify_all();
}

void QuotaAccounts::update(const std::map<std::string, std::pair<policy::QuotaLimits, std::vector<int>>>& limited) {
  std::unique_lock lock(mutex_);
  std::erase_if(counters_, [&](const auto& c) { return !limited.contains(c.first); });
  std::erase_if(dirty_, [&](const auto& key) { return !limited.contains(key); });
  for (const auto& [key, what] : limited) {
    auto& target = counters_[key];
    if (target.counter) {
      target.counter->set_limits(what.first);
      continue;
    }
    target.counter = std::make_shared<QuotaCounter>(key);
    target.counter->set_limits(what.first);
    auto roots = std::make_shared<std::vector<common::UniqueFd>>();
    for (int fd : what.second) {
      roots->emplace_back(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
      target.paths.push_back(fd_path(fd));
    }
    target.roots = roots;
    queue_.push_back(Walk{target.counter, target.roots});
  }
  lock.unlock();
  queued_.notify_all();
}

void QuotaAccounts::start() {
  std::unique_lock lock(mutex_);
  if (started_) return;
  started_ = true;
  walker_ = std::jthread([this](std::stop_token stop) { run(stop); });
}

void QuotaAccounts::run(const std::stop_token& stop) {
  while (!stop.stop_requested()) {
    Walk walk;
    {
      std::unique_lock lock(mutex_);
      queued_.wait(lock, stop, [&] { return !queue_.empty() || !dirty_.empty(); });
      if (queue_.empty() && dirty_.empty()) return;
      if (queue_.empty()) {
        lock.unlock();
        recount_dirty(stop);
        continue;
      }
      walk = std::move(queue_.front());
      queue_.erase(queue_.begin());
    }
    count_roots(*walk.roots, *walk.counter, stop);
    const auto u = walk.counter->usage();
    common::log(common::LogLevel::info, "quota of " + walk.counter->key() + ": counted " + std::to_string(u.bytes) +
                                            " bytes, " + std::to_string(u.inodes) + " inodes");
    walk.counter->counted();
  }
}

void QuotaAccounts::recount_dirty(const std::stop_token& stop) {
  {
    // A burst of host changes (a copy, an unpacked archive) costs one walk.
    std::shared_lock lock(mutex_);
    queued_.wait_for(lock, stop, kRecountDelay, [] { return false; });
  }
  std::vector<Target> targets;
  {
    std::unique_lock lock(mutex_);
    for (const auto& key : dirty_) {
      auto it = counters_.find(key);
      if (it != counters_.end() && it->second.counter->usage().counted) targets.push_back(it->second);
    }
    // A limit whose first walk is still queued is counted by it, host changes included.
    dirty_.clear();
  }
  for (const auto& t : targets) {
    if (!recount_roots(*t.roots, *t.counter, stop)) return;
    ++recounts_;
  }
}

std::string QuotaAccounts::progress() const {
  std::shared_lock lock(mutex_);
  size_t counting = 0;
  uint64_t walked = 0;
  for (const auto& [key, t] : counters_) {
    const auto u = t.counter->usage();
    if (u.counted) continue;
    ++counting;
    walked += u.walked;
  }
  if (counting == 0) return "";
  return "counting " + std::to_string(counting) + " of " + std::to_string(counters_.size()) +
         " limits (first walk; " + std::to_string(walked) + " entries so far; their writes wait)";
}

std::mutex& QuotaAccounts::file_lock(dev_t dev, ino_t ino) {
  return file_locks_[std::hash<uint64_t>{}(static_cast<uint64_t>(ino) ^ (static_cast<uint64_t>(dev) << 40)) %
                     file_locks_.size()];
}

}  // namespace portalfs::fuse
