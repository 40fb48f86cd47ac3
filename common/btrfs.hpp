// SPDX-License-Identifier: MIT
#pragma once

// btrfs subvolumes and qgroups, through the ioctls of <linux/btrfs.h> and the counts in
// /sys/fs/btrfs/<fsid>/qgroups (no btrfs tool): the third way quotas are enforced
// (mountmgr/quota.hpp). On a btrfs storage root each app's data root and each share is made a
// subvolume; its level-0 qgroup (0/<subvolume id>) counts the bytes it references and the
// kernel refuses with EDQUOT a write that would take it beyond max_referenced, whoever writes:
// the daemon, a passthrough file, the host. (CAP_SYS_RESOURCE lets a writer past a qgroup limit
// only while /sys/fs/btrfs/<fsid>/quota_override is 1, which is off by default:
// fs/btrfs/qgroup.c, qgroup_reserve.) btrfs counts bytes, never inodes.

#include <cstdint>
#include <optional>
#include <string>

namespace portalfs::common {

/// Whether `fd` is on btrfs.
bool on_btrfs(int fd);

/// The id of the subvolume `fd` lies in, when `fd` is the top directory of that subvolume
/// (inode 256 on btrfs); nullopt for anything else.
std::optional<uint64_t> subvolume_root_id(int fd);

/// The id of the subvolume `fd` lies in (any inode of it); nullopt off btrfs or on error.
std::optional<uint64_t> subvolume_of(int fd);

/// Makes `name` in `parent_fd` a new, empty subvolume (root-owned, 0755, as the kernel makes
/// them). Returns 0 or an errno.
int create_subvolume(int parent_fd, const std::string& name);

/// Deletes the subvolume `name` in `parent_fd` with everything in it, in one call. 0 or an errno.
int destroy_subvolume(int parent_fd, const std::string& name);

/// Turns qgroups on for the file system of `fd` (nothing when they are on) and waits for the
/// rescan that counts what is there. Throws std::runtime_error (one line).
void enable_qgroups(int fd);

/// Sets (bytes > 0) or clears (0) the max_referenced limit of qgroup 0/`subvolume`. Throws.
void set_qgroup_limit(int fd, uint64_t subvolume, uint64_t bytes);

struct QgroupUsage {
  uint64_t referenced = 0;
  uint64_t limit = 0;  // 0 = none
};

/// The kernel's count and limit of qgroup 0/`subvolume` (after a sync, so that what was written
/// is counted: btrfs accounts at each transaction commit when `sync`). Throws.
QgroupUsage qgroup_usage(int fd, uint64_t subvolume, bool sync = true);

/// The limit and count of the subvolume `fd` lies in, when it has a limit; nullopt otherwise
/// (off btrfs, qgroups off, no limit). Never throws: for statfs.
std::optional<QgroupUsage> qgroup_limit_of(int fd);

/// Whether a clone (copy_file_range, FICLONE) from `in_fd` into `out_fd` would pass a qgroup
/// limit by: `out_fd` on btrfs, in a subvolume with a limit, and `in_fd` in another subvolume.
/// btrfs charges such a clone's bytes at commit without checking the limit (fs/btrfs/reflink.c
/// reserves no qgroup data space); within one subvolume a clone takes no room.
bool clone_escapes_qgroup_limit(int in_fd, int out_fd);

}  // namespace portalfs::common
