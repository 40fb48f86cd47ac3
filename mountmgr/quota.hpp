// SPDX-License-Identifier: MIT
#pragma once

// The kernel side of quotas (policy/quota.hpp): project quotas of the backing file system
// (ext4 made with `-O quota,project` and mounted with `prjquota`; XFS mounted with `pquota`).
// (On btrfs the kernel's limits are qgroups of subvolumes instead: common/btrfs.hpp, used by
// mountmgr/verbs_quota.cpp; QuotaOps are the project quotas' only.)
//
// A limited app or share has a project id (kept in the state). Its backing directory and
// everything below it carry that id, and every directory carries FS_XFLAG_PROJINHERIT, so what
// is made there later inherits the id whoever makes it (the daemon, a passthrough write, the
// host). The kernel then counts bytes and inodes per id and refuses with EDQUOT what would go
// beyond the limit, on every path: the daemon's writes and the kernel's passthrough writes
// alike; `usage` reads the kernel's count (Q_GETQUOTA), which costs nothing and is exact after
// any restart or crash. A rename or link into a directory of another project id fails with
// EXDEV (the kernel's rule; the FUSE layer passes it on, and mv then copies).
//
// Apps can't change an id: the FUSE layer answers no ioctl (FS_IOC_FSSETXATTR is one) and
// passes user.* xattrs only, and only root in the initial user namespace may set a project id.
//
// The daemon writes as root: a thread with CAP_SYS_RESOURCE in effect is allowed past every
// quota limit (the kernel's ignore_hardlimit()), so limits bind the daemon's own writes only
// once it gives that capability up (see drop_quota_override()).

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

namespace portalfs::mountmgr {

struct QuotaUsage {
  uint64_t bytes = 0;
  uint64_t inodes = 0;
  uint64_t byte_limit = 0;   // 0 = none
  uint64_t inode_limit = 0;  // 0 = none
  friend bool operator==(const QuotaUsage&, const QuotaUsage&) = default;
};

/// The kernel calls, each replaceable (ManagerConfig::quota_ops): an empty member means the
/// real function below. The ones that can fail throw std::runtime_error (one line).
struct QuotaOps {
  std::function<std::string(int root_fd)> probe;                             // probe_project_quotas
  std::function<uint64_t(int dir_fd, uint32_t id)> assign;                   // assign_project
  std::function<void(int root_fd, uint32_t id, uint64_t bytes, uint64_t inodes)> limit;  // set_project_limits
  std::function<QuotaUsage(int root_fd, uint32_t id)> usage;                 // project_usage
  /// The count of a limit portalfsd accounts itself (QuotaRecord::by_daemon), by its key:
  /// nullopt while its first walk runs, or when nothing counts it (no filesystem wired: the
  /// manager alone, in tests). Set by portalfsd from the filesystem's counters.
  std::function<std::optional<QuotaUsage>(const std::string& key)> accounted;
};

/// "" when the file system holding `root_fd` enforces project quotas; otherwise one line saying
/// that it does not (naming the file system) and how to make it.
std::string probe_project_quotas(int root_fd);

/// Gives the directory `dir_fd` and everything below it on the same file system project id
/// `id`, and every directory FS_XFLAG_PROJINHERIT: one walk (*at calls, symlinks never
/// followed; symlinks, fifos, sockets and devices keep the id they have, as they can't be
/// opened to be changed). Returns how many inodes it changed. Throws std::runtime_error.
uint64_t assign_project(int dir_fd, uint32_t id);

/// Sets the hard limits of project `id` on the file system of `root_fd` (0 = none; bytes are
/// rounded up to the kernel's 1 KiB blocks). Throws std::runtime_error.
void set_project_limits(int root_fd, uint32_t id, uint64_t bytes, uint64_t inodes);

/// The kernel's count and limits for project `id`. Throws std::runtime_error.
QuotaUsage project_usage(int root_fd, uint32_t id);

/// Takes CAP_SYS_RESOURCE out of the calling thread's effective set (threads it starts later
/// inherit that), so the kernel holds the daemon's writes, passthrough files included, to the
/// project limits. Call before the daemon starts any thread. Returns "" or why it could not.
std::string drop_quota_override();

}  // namespace portalfs::mountmgr
