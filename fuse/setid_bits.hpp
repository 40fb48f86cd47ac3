// SPDX-License-Identifier: MIT
#pragma once

// Set-uid and set-gid bits of regular files in data views are emulated, as device nodes are
// (device_nodes.hpp): an app sets and sees them as on any disk (a restored system tree, a
// package manager, an image build keep their sudo and ping), while the backing store never
// holds them. A set-uid file there would be a way out for whoever runs it from a mount that
// is not nosuid (the host, a raw bind of the store), as the file's owner, which for an app
// without an id map is host root. Directories, fifos and sockets keep theirs on disk: nothing
// executes those.
//
// On disk a regular file with kept bits has its permission bits, the marker S_ISVTX (the
// sticky bit means nothing to Linux on a regular file, so nothing reads it) and the record:
// `trusted.portalfs.mode`, the shown set-uid, set-gid and sticky bits in octal ("4000",
// "6000", "7000"). Only a regular file with the marker costs a getxattr at lookup. Without a
// well-formed record a file shows its disk bits, set-id never: what the host left there is
// cleared at an app's first write (attr.hpp, without_setid).
//
// No app can forge or read a record: trusted.* is root's (CAP_SYS_ADMIN), and views pass
// user.* xattrs only (policy::decide_xattr_name). A daemon without CAP_SYS_ADMIN (rootless)
// cannot keep records and strips the bits, as every view did before.
//
// The kernel leaves the rules that clear the bits to the daemon (it takes
// FUSE_HANDLE_KILLPRIV_V2, session_io.hpp), and the daemon keeps them as Linux does on a disk
// (after_kill): a chown clears them; a write, or a truncation, by a caller without
// CAP_FSETID (the kernel flags such requests: SessionIo::request_kills_setid) clears them. An
// open for writing of a file that shows set-id bits therefore has its writes served by the
// daemon, not passed through (ops_file.cpp): a passed-through write never reaches it. A chmod by
// a caller outside the file's group drops set-gid in the kernel already (default_permissions).

#include <sys/stat.h>
#include <sys/types.h>

#include <optional>

namespace portalfs::fuse::setid_bits {

/// The xattr that holds the record.
inline constexpr const char* kXattr = "trusted.portalfs.mode";
/// The disk bit that says a regular file may have a record.
inline constexpr mode_t kMarker = S_ISVTX;
inline constexpr mode_t kSetid = S_ISUID | S_ISGID;

/// The special bits (S_ISUID, S_ISGID, S_ISVTX) the record of the regular file behind `fd`
/// (any fd of it, O_PATH included) keeps, given its stat; nullopt when it has none.
std::optional<mode_t> read(int fd, const struct stat& backing);

/// The mode a view shows for a regular file on disk with stat `backing` and record `kept`:
/// the disk's permission bits, and the record's special bits, or without one the disk's
/// sticky bit (never its set-id bits).
mode_t shown(const struct stat& backing, std::optional<mode_t> kept);

/// Gives the regular file behind `fd` the shown mode `mode` (07777): its record first (when
/// `mode` has set-id bits), then its disk mode (permission bits, the marker or its own sticky
/// bit, and `extra`: a device's marker), then, if `had_record`, the old record goes. A store
/// that takes no record (the daemon without CAP_SYS_ADMIN, a file system without trusted.*)
/// gets the mode without its set-id bits (logged once). 0 or an errno.
int apply(int fd, mode_t mode, mode_t extra, bool had_record);

/// The mode a regular file is made with on disk, before apply() gives it `mode`: without its
/// special bits when it has set-id bits to keep.
inline mode_t made_mode(mode_t mode) { return (mode & kSetid) ? mode & 0777 : mode; }

/// mknod of the regular file `name` in `dirfd` with mode bits `mode`. With set-id bits an
/// unnamed file (O_TMPFILE) gets its record and marker first, then its name (device_nodes
/// does the same), so no other name can be given the record. 0 or an errno.
int make(int dirfd, const char* name, mode_t mode);

/// `mode` (07777) after a chown, or a write or truncation by a caller without CAP_FSETID
/// (fs/inode.c, should_remove_suid): set-uid goes, set-gid when the file is group-executable.
inline mode_t after_kill(mode_t mode) {
  mode &= ~S_ISUID;
  if (mode & S_IXGRP) mode &= ~S_ISGID;
  return mode;
}

/// After a chown or truncation of the regular file behind `fd`: clears its kept set-id bits
/// as after_kill() says when `kill`, and puts `extra` (a device's marker, which a chown of a
/// group-executable file clears on disk) back. 0 or an errno.
int settle(int fd, mode_t extra, bool kill);

}  // namespace portalfs::fuse::setid_bits
