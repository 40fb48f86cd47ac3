// SPDX-License-Identifier: MIT
#include "tests/integration/fs_helpers.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <new>
#include <sstream>
#include <thread>

namespace portalfs::testutil {

void PrintTo(Err e, std::ostream* os) {
  if (e.value == 0) {
    *os << "0 (success)";
    return;
  }
  const char* name = ::strerrorname_np(e.value);
  *os << (name ? name : "errno " + std::to_string(e.value)) << " (" << std::strerror(e.value)
      << ")";
}

Err open_err(const std::string& path, int flags, mode_t mode) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) return Err{errno};
  ::close(fd);
  return kOk;
}

common::UniqueFd open_fd(const std::string& path, int flags, mode_t mode) {
  return common::UniqueFd(::open(path.c_str(), flags | O_CLOEXEC, mode));
}

common::UniqueFd openat_fd(int dirfd, const std::string& name, int flags, mode_t mode) {
  return common::UniqueFd(::openat(dirfd, name.c_str(), flags | O_CLOEXEC, mode));
}

FsIds::FsIds(uid_t uid, gid_t gid) {
  // fsgid first: changing it needs CAP_SETGID, which a non-zero fsuid does not take away, but
  // doing it first keeps the order the kernel documents for dropping privileges.
  old_gid_ = static_cast<gid_t>(::syscall(SYS_setfsgid, gid));
  old_uid_ = static_cast<uid_t>(::syscall(SYS_setfsuid, uid));
}

FsIds::~FsIds() {
  ::syscall(SYS_setfsuid, old_uid_);
  ::syscall(SYS_setfsgid, old_gid_);
}

namespace {
::testing::AssertionResult stat_result(const std::string& path, int rc, const char* what) {
  if (rc == 0) return ::testing::AssertionSuccess();
  Err e{errno};
  std::ostringstream os;
  PrintTo(e, &os);
  return ::testing::AssertionFailure() << what << "(" << path << ") failed: " << os.str();
}
}  // namespace

::testing::AssertionResult Lstat(const std::string& path, struct stat* st) {
  int rc = ::lstat(path.c_str(), st);
  return stat_result(path, rc, "lstat");
}

::testing::AssertionResult Stat(const std::string& path, struct stat* st) {
  int rc = ::stat(path.c_str(), st);
  return stat_result(path, rc, "stat");
}

std::vector<std::string> list_dir_fd(int dirfd) {
  std::vector<std::string> names;
  // A fresh open of "." so the caller's fd keeps its own position.
  int fd = ::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return names;
  DIR* d = ::fdopendir(fd);
  if (!d) {
    ::close(fd);
    return names;
  }
  while (dirent* e = ::readdir(d)) names.emplace_back(e->d_name);
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<std::string> list_dir(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return {};
  auto names = list_dir_fd(fd);
  ::close(fd);
  return names;
}

bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

AlignedBlock aligned_block(size_t size, char fill) {
  void* p = nullptr;
  if (::posix_memalign(&p, 4096, size) != 0) throw std::bad_alloc();
  std::memset(p, fill, size);
  return AlignedBlock(static_cast<char*>(p));
}

std::optional<std::string> pread_str(int fd, size_t n, off_t off) {
  std::string buf(n, '\0');
  size_t got = 0;
  while (got < n) {
    ssize_t r = ::pread(fd, buf.data() + got, n - got, off + static_cast<off_t>(got));
    if (r < 0) return std::nullopt;
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  buf.resize(got);
  return buf;
}

size_t count_open_fds() {
  size_t n = 0;
  DIR* d = ::opendir("/proc/self/fd");
  if (!d) return 0;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] != '.') n++;
  }
  ::closedir(d);
  return n - 1;  // the directory stream's own fd
}

long vm_rss_kib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return 0;
}

bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return pred();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

ScopedMount::ScopedMount(const std::string& what, const char* source, const std::string& target, const char* type,
                         unsigned long flags, const char* data)
    : target_(target) {
  if (::mount(source, target.c_str(), type, flags, data) != 0) {
    error_ = what + ": " + std::strerror(errno);
    return;
  }
  mounted_ = true;
}

ScopedMount::~ScopedMount() {
  if (mounted_) ::umount2(target_.c_str(), MNT_DETACH);
}

}  // namespace portalfs::testutil
