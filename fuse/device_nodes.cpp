// SPDX-License-Identifier: MIT
#include "fuse/device_nodes.hpp"

#include <fcntl.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>

#include "common/unique_fd.hpp"
#include "fuse/setid_bits.hpp"

namespace portalfs::fuse::device_nodes {

namespace {
using common::proc_path;

// A decimal number of at most `max`, the whole of `s`.
std::optional<unsigned> number(std::string_view s, unsigned max) {
  unsigned v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || end != s.data() + s.size() || s.empty() || v > max) return std::nullopt;
  return v;
}
}  // namespace

bool is_device(mode_t type) { return S_ISCHR(type) || S_ISBLK(type); }

std::string encode(const Device& device) {
  return std::string(S_ISBLK(device.type) ? "b " : "c ") + std::to_string(major(device.rdev)) + ":" +
         std::to_string(minor(device.rdev));
}

std::optional<Device> decode(std::string_view record) {
  if (record.size() < 4 || record[1] != ' ') return std::nullopt;
  const mode_t type = record[0] == 'c' ? S_IFCHR : record[0] == 'b' ? S_IFBLK : 0;
  if (!type) return std::nullopt;
  record.remove_prefix(2);
  const size_t colon = record.find(':');
  if (colon == std::string_view::npos) return std::nullopt;
  // The widths Linux gives dev_t (12-bit major, 20-bit minor; MAJOR/MINORBITS).
  auto maj = number(record.substr(0, colon), (1u << 12) - 1);
  auto min = number(record.substr(colon + 1), (1u << 20) - 1);
  if (!maj || !min) return std::nullopt;
  return Device{type, makedev(*maj, *min)};
}

bool may_be_device(const struct stat& backing) {
  return S_ISREG(backing.st_mode) && (backing.st_mode & kMarker) && backing.st_size == 0;
}

std::optional<Device> read_device(int fd, const struct stat& backing) {
  if (!may_be_device(backing)) return std::nullopt;
  char buf[32];
  const ssize_t len = ::getxattr(proc_path(fd).c_str(), kXattr, buf, sizeof(buf));
  if (len <= 0) return std::nullopt;
  return decode(std::string_view(buf, static_cast<size_t>(len)));
}

struct stat as_shown(int fd, const struct stat& backing) {
  struct stat st = backing;
  if (!S_ISREG(backing.st_mode)) return st;
  st.st_mode = setid_bits::shown(backing, setid_bits::read(fd, backing));
  if (auto device = read_device(fd, backing)) {
    st.st_mode = device->type | (st.st_mode & 07777);
    st.st_rdev = device->rdev;
  }
  return st;
}

int make(int dirfd, const char* name, mode_t perms, const Device& device) {
  common::UniqueFd fd(::openat(dirfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, perms & 0777));
  if (!fd) return errno;
  const std::string record = encode(device);
  if (::fsetxattr(fd.get(), kXattr, record.data(), record.size(), 0) != 0) return errno;
  // After O_TMPFILE's own mode: the marker (and the set-id bits' record and marker) is set as
  // the last thing before the name exists.
  if (int err = setid_bits::apply(fd.get(), perms, kMarker, false)) return err;
  if (::linkat(AT_FDCWD, proc_path(fd.get()).c_str(), dirfd, name, AT_SYMLINK_FOLLOW) != 0) return errno;
  return 0;
}

}  // namespace portalfs::fuse::device_nodes
