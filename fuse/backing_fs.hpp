// SPDX-License-Identifier: MIT
#pragma once

// What the storage root's file system can't do that the daemon otherwise leans on, and the
// fallback for each, decided once at start (README "Over GlusterFS").
//
// A FUSE file system as the storage root (GlusterFS's client, fuse.glusterfs) lacks two things:
//   - durable file handles. The kernel encodes a FUSE inode's handle as its node id, and decodes
//     one after the inode left its cache only if the server announced FUSE_EXPORT_SUPPORT
//     (fs/fuse/inode.c, fuse_get_dentry); GlusterFS does not, so open_by_handle_at answers
//     ESTALE once memory pressure drops the inode. The inode table then keeps each inode's
//     O_PATH fd pinned (the table's no-handle mode), which keeps the no-escape rule as it is:
//     an inode is still reached only through its own fd, never by a path.
//   - a fanotify file system mark (FUSE reports no fsid: ENODEV). Changes made behind the
//     daemon's back (on another node, on the host) reach a data view at its attribute timeout
//     only, so data views get the shared views' short timeouts instead of 60 s.
// Kernel passthrough of backing files works over it (the backing file's s_stack_depth is 0,
// below portalfs's max_stack_depth of 1: fs/fuse/backing.c), and so do user.* and trusted.*
// xattrs (as root), so those stay as they are. But each passthrough open makes the kernel open
// the backing file once more (backing_file_open), a round trip to the GlusterFS bricks (OPEN,
// then RELEASE), and its reads bypass the FUSE page cache: a read-only first open is served by
// the daemon instead, its pages kept across opens (Options::passthrough_reads; opens that write
// still pass through). Small-file reads then cost a LOOKUP, as on the client mount itself.

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
