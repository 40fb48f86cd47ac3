// SPDX-License-Identifier: MIT
#include "fuse/setid_bits.hpp"

#include <fcntl.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <string>

#include "common/log.hpp"
#include "common/unique_fd.hpp"

namespace portalfs::fuse::setid_bits {

namespace {
using common::proc_path;
constexpr mode_t kSpecial = S_ISUID | S_ISGID | S_ISVTX;
}  // namespace

std::optional<mode_t> read(int fd, const struct stat& backing) {
  if (!S_ISREG(backing.st_mode) || !(backing.st_mode & kMarker)) return std::nullopt;
  char buf[8];
  const ssize_t len = ::getxattr(proc_path(fd).c_str(), kXattr, buf, sizeof(buf));
  if (len <= 0) return std::nullopt;
  unsigned bits = 0;
  const auto [end, ec] = std::from_chars(buf, buf + len, bits, 8);
  if (ec != std::errc{} || end != buf + len || (bits & ~kSpecial) != 0) return std::nullopt;
  return static_cast<mode_t>(bits);
}

mode_t shown(const struct stat& backing, std::optional<mode_t> kept) {
  return (backing.st_mode & ~kSpecial) | (kept ? *kept : backing.st_mode & S_ISVTX);
}

int apply(int fd, mode_t mode, mode_t extra, bool had_record) {
  const std::string path = proc_path(fd);
  if (mode & kSetid) {
    char record[8];
    const auto [end, ec] = std::to_chars(record, record + sizeof(record), mode & kSpecial, 8);
    if (ec != std::errc{}) return EINVAL;
    if (::setxattr(path.c_str(), kXattr, record, static_cast<size_t>(end - record), 0) == 0) {
      return ::chmod(path.c_str(), (mode & 0777) | kMarker | extra) == 0 ? 0 : errno;
    }
    // A store that takes no trusted.* xattrs: the bits go, as they did before records.
    common::log_once(common::LogLevel::warn, "setid-record",
                     std::string("set-uid and set-gid bits of files are dropped: their record (") +
                         kXattr + ") can't be written here (" + std::strerror(errno) + ")");
    mode &= ~kSetid;
  }
  if (::chmod(path.c_str(), (mode & 01777) | extra) != 0) return errno;
  if (had_record && ::removexattr(path.c_str(), kXattr) != 0 && errno != ENODATA) return errno;
  return 0;
}

int make(int dirfd, const char* name, mode_t mode) {
  if (!(mode & kSetid)) return ::mknodat(dirfd, name, S_IFREG | mode, 0) == 0 ? 0 : errno;
  common::UniqueFd fd(::openat(dirfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, made_mode(mode)));
  if (!fd) return errno;
  if (int err = apply(fd.get(), mode, 0, false)) return err;
  if (::linkat(AT_FDCWD, proc_path(fd.get()).c_str(), dirfd, name, AT_SYMLINK_FOLLOW) != 0) return errno;
  return 0;
}

int settle(int fd, mode_t extra, bool kill) {
  struct stat st {};
  if (::fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) return errno;
  const auto kept = read(fd, st);
  const mode_t now = shown(st, kept) & 07777;
  const mode_t after = kill && kept ? after_kill(now) : now;
  if (after == now && (st.st_mode & extra) == extra) return 0;
  return apply(fd, after, extra, kept.has_value());
}

}  // namespace portalfs::fuse::setid_bits
