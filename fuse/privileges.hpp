// SPDX-License-Identifier: MIT
#pragma once

// What the daemon may do besides serving its own user: probed once at start. portalfsd runs
// as root under systemd; run by an ordinary user (rootless: development, rootless Podman) it
// mounts through fusermount3 and goes without what needs privileges (README "Rootless"):
//   - decode_handles (CAP_DAC_READ_SEARCH): re-opening a backing file by its handle
//     (open_by_handle_at). Without it every inode the kernel knows keeps its O_PATH fd
//     (inode_table.hpp), and no change events are raised in sibling views (events.cpp opens
//     the siblings by handle) nor for changes on the host (host_watch.cpp, which also needs
//     CAP_SYS_ADMIN for a file system mark).
//   - sys_admin (CAP_SYS_ADMIN): the kernel registers passthrough backing files for it only
//     (fs/fuse/backing.c), so every read and write is served by the daemon instead; and
//     trusted.* xattrs, where provenance.cpp records which app made a file, are its alone,
//     so none is recorded (Options::provenance off: the modes that protect count every file
//     as another's, the safe side).
//   - other_owners (CAP_SETUID, CAP_CHOWN): creating files as another uid (a view's id map or
//     squash) and chown. Without it a create whose disk owner is not the daemon's own ids
//     fails with EPERM (fuse/attr.hpp), and the kernel refuses a chown with EPERM.
//   - allow_other: fusermount3 lets an ordinary user's mount be used by other users only with
//     user_allow_other in /etc/fuse.conf. A rootless mount goes without: only the daemon's user
//     (and a rootless container's root, which is that user) can use it.

#include <string>
#include <vector>

namespace portalfs::fuse {

struct Privileges {
  bool decode_handles = true;
  bool sys_admin = true;
  bool other_owners = true;
  bool allow_other = true;

  /// This process's, probed (capget, and an open_by_handle_at that fails either way).
  static Privileges probe();
  /// One line per thing the daemon goes without, naming what and how to get it.
  [[nodiscard]] std::vector<std::string> missing() const;
};

}  // namespace portalfs::fuse
