// SPDX-License-Identifier: MIT
#pragma once

// Small syscall helpers shared by the integration suites (posix, read-only, escape,
// coherence, scale, stress). They keep the tests about behaviour: an op's errno compared
// by name, a stat that reports why it failed, a thread acting as another caller.

#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "common/unique_fd.hpp"

namespace portalfs::testutil {

/// An op's outcome as an errno (0 = success), printed by name in failure messages
/// ("EROFS (Read-only file system)" rather than "30").
struct Err {
  int value = 0;
  friend bool operator==(Err, Err) = default;
};
void PrintTo(Err e, std::ostream* os);
inline std::ostream& operator<<(std::ostream& os, Err e) {
  PrintTo(e, &os);
  return os;
}

/// The outcome of a syscall that returns -1 and sets errno on failure. Call as
/// sys(::mkdir(...)): errno is read right after the call returns.
inline Err sys(long rc) { return Err{rc < 0 ? errno : 0}; }
inline constexpr Err kOk{0};

/// open() as an outcome; an fd it unexpectedly got is closed again, since an fd left open on
/// the mount would keep the lazy unmount of the fixture's teardown from ever completing.
Err open_err(const std::string& path, int flags, mode_t mode = 0644);

/// open()/openat() with O_CLOEXEC into an owner that closes the fd, also when an ASSERT
/// leaves the test early (an fd left open on the mount would hang the fixture's teardown).
common::UniqueFd open_fd(const std::string& path, int flags, mode_t mode = 0644);
common::UniqueFd openat_fd(int dirfd, const std::string& name, int flags, mode_t mode = 0644);

/// Switches this thread's fsuid/fsgid (raw syscalls, this thread only) for the guard's
/// lifetime. With a non-zero fsuid the kernel drops the thread's file capabilities
/// (CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_CHOWN, ...), so FUSE requests carry these ids and
/// default_permissions checks them as for any unprivileged caller; back at 0 they return.
/// Lets a test act as a non-root caller without leaving its process (the daemon's threads
/// keep their own credentials).
class FsIds {
 public:
  FsIds(uid_t uid, gid_t gid);
  ~FsIds();
  FsIds(const FsIds&) = delete;
  FsIds& operator=(const FsIds&) = delete;

 private:
  uid_t old_uid_;
  gid_t old_gid_;
};

/// lstat()/stat() as gtest assertions that say which path failed and why.
::testing::AssertionResult Lstat(const std::string& path, struct stat* st);
::testing::AssertionResult Stat(const std::string& path, struct stat* st);

/// Names in a directory (with "." and ".."), sorted; empty when it cannot be opened.
std::vector<std::string> list_dir(const std::string& path);
/// The same through an open directory fd (which it does not close).
std::vector<std::string> list_dir_fd(int dirfd);

/// Writes all of `data` at the fd's position; false on a short or failed write.
bool write_all(int fd, std::string_view data);
/// pread of up to `n` bytes at `off` (fewer at EOF); nullopt on error.
std::optional<std::string> pread_str(int fd, size_t n, off_t off);

/// A block of memory aligned to 4096 bytes, as O_DIRECT on a disk needs its buffers
/// (posix_memalign), filled with `fill`; freed with the owner.
struct FreeDeleter {
  void operator()(char* p) const { std::free(p); }
};
using AlignedBlock = std::unique_ptr<char[], FreeDeleter>;
AlignedBlock aligned_block(size_t size, char fill);

/// Entries in /proc/self/fd (this process's open fds, the daemon's included).
size_t count_open_fds();
/// VmRSS of this process in KiB (the in-process daemon included), 0 if unknown.
long vm_rss_kib();

/// Polls `pred` until true or `timeout` passes (for changes the filesystem announces to the
/// kernel just after replying: sibling views' names and attributes).
bool eventually(const std::function<bool()>& pred,
                std::chrono::milliseconds timeout = std::chrono::milliseconds(1000));

/// A mount at `target`, lazily unmounted on destruction. ok() is false (and error() says
/// why) when mounting is not permitted here.
class ScopedMount {
 public:
  ~ScopedMount();
  ScopedMount(const ScopedMount&) = delete;
  ScopedMount& operator=(const ScopedMount&) = delete;
  [[nodiscard]] bool ok() const { return mounted_; }
  [[nodiscard]] const std::string& error() const { return error_; }

 protected:
  /// mount(2) with these arguments; `what` starts the error.
  ScopedMount(const std::string& what, const char* source, const std::string& target, const char* type,
              unsigned long flags, const char* data);

 private:
  std::string target_;
  bool mounted_ = false;
  std::string error_;
};

/// A bind mount of `source` over `target`.
class BindMount : public ScopedMount {
 public:
  BindMount(const std::string& source, const std::string& target)
      : ScopedMount("bind mount of " + source + " on " + target, source.c_str(), target, nullptr, MS_BIND, nullptr) {}
};

/// A tmpfs mounted at `target` (another file system, another st_dev).
class TmpfsMount : public ScopedMount {
 public:
  explicit TmpfsMount(const std::string& target)
      : ScopedMount("tmpfs on " + target, "portalfs-test-tmpfs", target, "tmpfs", 0, "size=1m") {}
};

}  // namespace portalfs::testutil
