// SPDX-License-Identifier: MIT
#pragma once

// What the storage root's file system can't do that the daemon otherwise leans on, and the
// fallback for each, decided once at start (README "Over GlusterFS").
//
// A FUSE file system as the storage root (GlusterFS's client, fuse.glusterfs) lacks three things:
//   - durable file handles. The kernel encodes a FUSE inode's handle as its node id, and decodes
//     one after the inode left its cache only if the server announced FUSE_EXPORT_SUPPORT
//     (fs/fuse/inode.c, fuse_get_dentry); GlusterFS does not, so open_by_handle_at answers
//     ESTALE once memory pressure drops the inode. The inode table then keeps each inode's
//     O_PATH fd pinned (the table's no-handle mode), which keeps the no-escape rule as it is:
//     an inode is still reached only through its own fd, never by a path.
//   - a fanotify file system mark (FUSE reports no fsid: ENODEV). Changes made behind the
//     daemon's back (on another node, on the host) reach a data view at its attribute timeout
//     only, so data views get the shared views' short timeouts instead of 60 s.
//   - a backing file the kernel may open as the daemon. A passthrough open makes the kernel
//     open the backing file once more (fs/fuse/passthrough.c, backing_file_open), with the
//     daemon's credentials on the file but in the calling app's task: a FUSE client's OPEN
//     carries the caller's uid, and GlusterFS checks it against the file's owner and mode. So
//     the volume, not the view, judged the app: a shared view's files are the share owner's,
//     and an app's container root writing another uid's file in its data view is not that
//     uid: their opens failed with EIO after the view had allowed them. Kernel passthrough is
//     off (Options::passthrough): every read and write is served by the daemon with its own
//     fd, which it opened as root; files one view shows keep their page cache across opens.
//     (It would work otherwise: the backing's s_stack_depth is 0, below portalfs's
//     max_stack_depth of 1, fs/fuse/backing.c.) user.* and trusted.* xattrs work (as root).

#include <string>
#include <vector>

#include "fuse/filesystem.hpp"

namespace portalfs::fuse {

struct BackingFs {
  std::string type;  // the mount's file system type as /proc/self/mountinfo names it ("ext4", "fuse.glusterfs")
  bool fuse = false;  // a FUSE file system (statfs f_type FUSE_SUPER_MAGIC)
};

/// The file system `path` is on (or will be: its nearest existing ancestor's). An unreadable
/// path gives type "" and fuse false (the start fails on it later with its own message).
BackingFs probe_backing_fs(const std::string& path);

/// Turns off in `options` what `fs` can't serve; returns one log line per fallback taken.
std::vector<std::string> fit_to_backing(Options& options, const BackingFs& fs);

}  // namespace portalfs::fuse
