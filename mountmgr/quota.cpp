// SPDX-License-Identifier: MIT
#include "mountmgr/quota.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <sys/ioctl.h>
#include <sys/quota.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <vector>

#include "common/unique_fd.hpp"

namespace portalfs::mountmgr {
namespace {

#ifndef SYS_quotactl_fd
#define SYS_quotactl_fd 443  // Linux 5.14+, the same number on every architecture
#endif

// quotactl on the file system of `fd`: no block device path needed (a loop image, a bind).
int quotactl_fd(int fd, int cmd, uint32_t id, void* addr) {
  return static_cast<int>(::syscall(SYS_quotactl_fd, fd, QCMD(cmd, PRJQUOTA), id, addr));
}

[[noreturn]] void fail(const std::string& what, int err) {
  throw std::runtime_error(what + ": " + std::strerror(err));
}

std::string fs_name(int fd) {
  struct statfs sf {};
  if (::fstatfs(fd, &sf) != 0) return "its file system";
  switch (sf.f_type) {
    case EXT4_SUPER_MAGIC: return "ext4";  // ext2/ext3 share the magic
    case XFS_SUPER_MAGIC: return "xfs";
    case BTRFS_SUPER_MAGIC: return "btrfs";
    case TMPFS_MAGIC: return "tmpfs";
    default: return "its file system";
  }
}

// Gives one open inode the id (and directories PROJINHERIT); whether it changed anything.
bool tag(int fd, uint32_t id, bool dir, const std::string& where) {
  struct fsxattr fx {};
  if (::ioctl(fd, FS_IOC_FSGETXATTR, &fx) != 0) fail("cannot read the project id of " + where, errno);
  const bool inherit = !dir || (fx.fsx_xflags & FS_XFLAG_PROJINHERIT);
  if (fx.fsx_projid == id && inherit) return false;
  fx.fsx_projid = id;
  if (dir) fx.fsx_xflags |= FS_XFLAG_PROJINHERIT;
  if (::ioctl(fd, FS_IOC_FSSETXATTR, &fx) != 0) fail("cannot set project id " + std::to_string(id) + " on " + where, errno);
  return true;
}

struct DirCloser {
  void operator()(DIR* d) const { ::closedir(d); }
};

}  // namespace

std::string probe_project_quotas(int root_fd) {
  struct if_dqinfo info {};
  if (quotactl_fd(root_fd, Q_GETINFO, 0, &info) == 0) return "";
  const int err = errno;
  std::string why = err == ESRCH ? "has no project quotas turned on"
                                 : std::string("does not answer project quota requests (") + std::strerror(err) + ")";
  return "the storage root's file system (" + fs_name(root_fd) + ") " + why +
         "; make it with mkfs.ext4 -O quota,project (or tune2fs -O quota,project while it is unmounted) and "
         "mount it with -o prjquota (XFS: -o pquota); the kernel needs CONFIG_QUOTA and CONFIG_QFMT_V2";
}

uint64_t assign_project(int dir_fd, uint32_t id) {
  struct stat top {};
  if (::fstat(dir_fd, &top) != 0) fail("cannot stat the directory to give project id " + std::to_string(id), errno);
  uint64_t changed = 0;
  // Depth first with one open DIR per level (the tree's depth in fds, as any walk here).
  struct Level {
    std::unique_ptr<DIR, DirCloser> dir;
    std::string path;  // relative to dir_fd, for messages
  };
  std::vector<Level> stack;
  auto push = [&](int fd, std::string path) {
    if (tag(fd, id, true, path.empty() ? "." : path)) ++changed;
    DIR* d = ::fdopendir(fd);
    if (!d) {
      const int err = errno;
      ::close(fd);
      fail("cannot list " + path, err);
    }
    stack.push_back({std::unique_ptr<DIR, DirCloser>(d), std::move(path)});
  };
  const int first = ::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (first < 0) fail("cannot open the directory to give project id " + std::to_string(id), errno);
  push(first, "");
  while (!stack.empty()) {
    Level& level = stack.back();
    errno = 0;
    const dirent* e = ::readdir(level.dir.get());
    if (!e) {
      if (errno != 0) fail("cannot list " + level.path, errno);
      stack.pop_back();
      continue;
    }
    const std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    const int parent = ::dirfd(level.dir.get());
    const std::string path = level.path.empty() ? name : level.path + "/" + name;
    struct stat st {};
    if (::fstatat(parent, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) continue;  // deleted meanwhile
      fail("cannot stat " + path, errno);
    }
    if (st.st_dev != top.st_dev) continue;  // another file system mounted below: not ours
    if (S_ISDIR(st.st_mode)) {
      const int fd = ::openat(parent, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (fd < 0) {
        if (errno == ENOENT) continue;
        fail("cannot open " + path, errno);
      }
      push(fd, path);  // `level` is not used after this: push may move the stack
    } else if (S_ISREG(st.st_mode)) {
      common::UniqueFd fd(::openat(parent, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
      if (!fd) {
        if (errno == ENOENT) continue;
        fail("cannot open " + path, errno);
      }
      if (tag(fd.get(), id, false, path)) ++changed;
    }
  }
  return changed;
}

void set_project_limits(int root_fd, uint32_t id, uint64_t bytes, uint64_t inodes) {
  struct if_dqblk q {};
  q.dqb_bhardlimit = (bytes + QIF_DQBLKSIZE - 1) / QIF_DQBLKSIZE;  // in 1 KiB blocks
  q.dqb_ihardlimit = inodes;
  q.dqb_valid = QIF_LIMITS;
  if (quotactl_fd(root_fd, Q_SETQUOTA, id, &q) != 0) fail("cannot set the limits of project " + std::to_string(id), errno);
}

QuotaUsage project_usage(int root_fd, uint32_t id) {
  struct if_dqblk q {};
  if (quotactl_fd(root_fd, Q_GETQUOTA, id, &q) != 0) fail("cannot read the usage of project " + std::to_string(id), errno);
  return {q.dqb_curspace, q.dqb_curinodes, q.dqb_bhardlimit * QIF_DQBLKSIZE, q.dqb_ihardlimit};
}

std::string drop_quota_override() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (::syscall(SYS_capget, &header, data) != 0) return std::strerror(errno);
  data[CAP_TO_INDEX(CAP_SYS_RESOURCE)].effective &= ~CAP_TO_MASK(CAP_SYS_RESOURCE);
  if (::syscall(SYS_capset, &header, data) != 0) return std::strerror(errno);
  return "";
}

}  // namespace portalfs::mountmgr
