// SPDX-License-Identifier: MIT
#include "common/btrfs.hpp"

#include <fcntl.h>
#include <linux/btrfs.h>
#include <linux/magic.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <stdexcept>

#include "common/unique_fd.hpp"

namespace portalfs::common {
namespace {

constexpr uint64_t kSubvolumeRootIno = 256;  // BTRFS_FIRST_FREE_OBJECTID: each subvolume's top

[[noreturn]] void fail(const std::string& what, int err) {
  throw std::runtime_error(what + ": " + std::strerror(err));
}

// An ioctl on `fd`, or on `fd` opened again for reading when it is an O_PATH fd (which takes
// no ioctl: EBADF), as the FUSE layer keeps them.
template <typename Arg>
int ioctl_on(int fd, unsigned long request, Arg* arg) {
  if (::ioctl(fd, request, arg) == 0) return 0;
  if (errno != EBADF) return errno;
  const std::string self = "/proc/self/fd/" + std::to_string(fd);
  UniqueFd again(::open(self.c_str(), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
  if (!again) return errno;
  return ::ioctl(again.get(), request, arg) == 0 ? 0 : errno;
}

// /sys/fs/btrfs/<fsid>: the file system's directory in sysfs, named by its UUID.
std::string sysfs_dir(int fd) {
  btrfs_ioctl_fs_info_args info {};
  if (int err = ioctl_on(fd, BTRFS_IOC_FS_INFO, &info); err != 0) fail("cannot read the btrfs file system's id", err);
  char uuid[40];
  const unsigned char* u = info.fsid;
  std::snprintf(uuid, sizeof uuid, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1],
                u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
  return std::string("/sys/fs/btrfs/") + uuid;
}

std::optional<uint64_t> read_number(const std::string& path) {
  std::ifstream in(path);
  uint64_t v = 0;
  if (!(in >> v)) return std::nullopt;
  return v;
}

std::string qgroup_dir(int fd, uint64_t subvolume) {
  return sysfs_dir(fd) + "/qgroups/0_" + std::to_string(subvolume);
}

}  // namespace

bool on_btrfs(int fd) {
  struct statfs sf {};
  return ::fstatfs(fd, &sf) == 0 && sf.f_type == BTRFS_SUPER_MAGIC;
}

std::optional<uint64_t> subvolume_root_id(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_ino != kSubvolumeRootIno || !on_btrfs(fd)) return std::nullopt;
  return subvolume_of(fd);
}

std::optional<uint64_t> subvolume_of(int fd) {
  // treeid 0 asks for the tree of `fd`; objectid 256 needs no privilege (fs/btrfs/ioctl.c).
  btrfs_ioctl_ino_lookup_args args {};
  args.treeid = 0;
  args.objectid = kSubvolumeRootIno;
  if (ioctl_on(fd, BTRFS_IOC_INO_LOOKUP, &args) != 0) return std::nullopt;
  return args.treeid;
}

int create_subvolume(int parent_fd, const std::string& name) {
  btrfs_ioctl_vol_args args {};
  if (name.size() >= sizeof args.name) return ENAMETOOLONG;
  std::memcpy(args.name, name.c_str(), name.size() + 1);
  return ::ioctl(parent_fd, BTRFS_IOC_SUBVOL_CREATE, &args) == 0 ? 0 : errno;
}

int destroy_subvolume(int parent_fd, const std::string& name) {
  btrfs_ioctl_vol_args args {};
  if (name.size() >= sizeof args.name) return ENAMETOOLONG;
  std::memcpy(args.name, name.c_str(), name.size() + 1);
  return ::ioctl(parent_fd, BTRFS_IOC_SNAP_DESTROY, &args) == 0 ? 0 : errno;
}

void enable_qgroups(int fd) {
  struct stat st {};
  if (::stat((sysfs_dir(fd) + "/qgroups").c_str(), &st) == 0) return;  // on already
  btrfs_ioctl_quota_ctl_args ctl {};
  ctl.cmd = BTRFS_QUOTA_CTL_ENABLE;
  if (int err = ioctl_on(fd, BTRFS_IOC_QUOTA_CTL, &ctl); err != 0) fail("cannot turn btrfs qgroups on", err);
  // The rescan counts what was there before; usage read meanwhile would be short.
  if (int err = ioctl_on(fd, BTRFS_IOC_QUOTA_RESCAN_WAIT, static_cast<void*>(nullptr)); err != 0) {
    fail("cannot wait for the btrfs qgroup rescan", err);
  }
}

void set_qgroup_limit(int fd, uint64_t subvolume, uint64_t bytes) {
  btrfs_ioctl_qgroup_limit_args args {};
  args.qgroupid = subvolume;  // level 0: the id alone
  args.lim.flags = BTRFS_QGROUP_LIMIT_MAX_RFER;
  args.lim.max_rfer = bytes ? bytes : ~uint64_t{0};  // all ones clears it (fs/btrfs/qgroup.c CLEAR_VALUE)
  if (int err = ioctl_on(fd, BTRFS_IOC_QGROUP_LIMIT, &args); err != 0) {
    fail("cannot set the limit of btrfs qgroup 0/" + std::to_string(subvolume), err);
  }
}

QgroupUsage qgroup_usage(int fd, uint64_t subvolume, bool sync) {
  if (sync && ::syncfs(fd) != 0) fail("cannot sync the btrfs file system", errno);
  const std::string dir = qgroup_dir(fd, subvolume);
  const auto referenced = read_number(dir + "/referenced");
  const auto limit = read_number(dir + "/max_referenced");
  if (!referenced || !limit) {
    throw std::runtime_error("no btrfs qgroup 0/" + std::to_string(subvolume) + " (" + dir + " unreadable; qgroups off?)");
  }
  return {*referenced, *limit};
}

std::optional<QgroupUsage> qgroup_limit_of(int fd) {
  try {
    if (!on_btrfs(fd)) return std::nullopt;
    const auto subvolume = subvolume_of(fd);
    if (!subvolume) return std::nullopt;
    const QgroupUsage u = qgroup_usage(fd, *subvolume, /*sync=*/false);
    if (u.limit == 0) return std::nullopt;
    return u;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

bool clone_escapes_qgroup_limit(int in_fd, int out_fd) {
  if (!on_btrfs(out_fd)) return false;
  const auto out = subvolume_of(out_fd);
  const auto in = subvolume_of(in_fd);  // nullopt off btrfs: a copy from there writes
  return out && in && *in != *out && qgroup_limit_of(out_fd);
}

}  // namespace portalfs::common
