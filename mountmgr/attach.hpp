// SPDX-License-Identifier: MIT
#pragma once

// Live attach/detach of views into a running container's mount namespace:
// open_tree(OPEN_TREE_CLONE) in the host namespace, mount_setattr(ro,nosuid,nodev) on the
// detached clone, then setns(/proc/PID/ns/mnt) in a single-threaded forked child (setns
// refuses a threaded process) and move_mount onto the target. Setting the attributes on the
// clone before it is moved means the mount is never visible in the container without them.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace portalfs::mountmgr {

struct Bind {
  std::string source;  // host path (below the FUSE mount)
  std::string target;  // path inside the container
  bool read_only = false;
  friend bool operator==(const Bind&, const Bind&) = default;
};

/// What tells a process apart from a later one that gets the same pid: its start time, the
/// mount namespace it is in and the boot it runs in. A pid alone is recycled, and so is a
/// namespace's inode number once the namespace is gone (the lowest free one is handed out);
/// after a reboot (state.json outlives it) pids and start times begin again. The start time has
/// clock-tick resolution (10 ms): a newcomer started in the very tick its predecessor with that
/// pid started can't be told apart, but getting the pid back within a tick takes writing
/// ns_last_pid, which only a privileged process can.
struct ProcessIdentity {
  int pid = 0;
  uint64_t start_time = 0;  // field 22 of /proc/PID/stat: clock ticks after boot
  uint64_t mnt_ns_dev = 0;  // st_dev and st_ino of /proc/PID/ns/mnt
  uint64_t mnt_ns_ino = 0;
  std::string boot_id;      // /proc/sys/kernel/random/boot_id
  friend bool operator==(const ProcessIdentity&, const ProcessIdentity&) = default;
};

/// The identity of the process PID now; nullopt when there is none or it is a zombie.
std::optional<ProcessIdentity> identify_process(int pid);

/// Why `now` (what identify_process says of recorded.pid today) is not the process `recorded`,
/// as one line ("no such process", "pid 42 is another process now (...)"); "" when it is.
std::string identity_change(const ProcessIdentity& recorded, const std::optional<ProcessIdentity>& now);

/// "DEV:INO", as state.json keeps a mount namespace.
std::string format_mnt_ns(const ProcessIdentity& process);

/// Mounts every bind into the mount namespace of `process`, in order (parents first); a missing
/// target directory is created (as the container's root when the container has a user
/// namespace). Every mount carries nosuid,nodev, and ro when read_only. A mount already at a
/// target is detached first (so a dead FUSE bind is replaced). Nothing is done unless the
/// namespace opened for setns is the recorded one and the process is still the one recorded
/// after it was opened. Throws std::runtime_error (one line) on failure.
void attach_binds(const ProcessIdentity& process, const std::vector<Bind>& binds);

/// Detaches (MNT_DETACH) the mounts at `targets` inside the mount namespace of `process`,
/// children first, with the same check as attach_binds. Throws std::runtime_error (one line).
void detach_binds(const ProcessIdentity& process, const std::vector<std::string>& targets);

}  // namespace portalfs::mountmgr
