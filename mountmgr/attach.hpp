// SPDX-License-Identifier: MIT
#pragma once

// Live attach/detach of views into a running container's mount namespace:
// open_tree(OPEN_TREE_CLONE) in the host namespace, mount_setattr(ro,nosuid,nodev) on the
// detached clone, then setns(/proc/PID/ns/mnt) in a single-threaded forked child (setns
// refuses a threaded process) and move_mount onto the target. See
// shared/research/container-feasibility.md E4 and E5.

#include <string>
#include <vector>

namespace portalfs::mountmgr {

struct Bind {
  std::string source;  // host path (below the FUSE mount)
  std::string target;  // path inside the container
  bool read_only = false;
  friend bool operator==(const Bind&, const Bind&) = default;
};

/// Mounts every bind into PID's mount namespace, in order (parents first); a missing target
/// directory is created (as the container's root when the container has a user namespace).
/// Every mount carries nosuid,nodev, and ro when read_only. A mount already at a target is
/// detached first (so a dead FUSE bind is replaced). Returns "" on success, else one line.
std::string attach_binds(int pid, const std::vector<Bind>& binds);

/// Detaches (MNT_DETACH) the mounts at `targets` inside PID's mount namespace, children first.
/// Returns "" on success, else one line.
std::string detach_binds(int pid, const std::vector<std::string>& targets);

/// True when /proc/PID exists and is not a zombie.
bool process_alive(int pid);

}  // namespace portalfs::mountmgr
