// SPDX-License-Identifier: MIT
#pragma once

// Device nodes in data views are emulated: mknod of a character or block device makes a plain
// empty regular file on the backing store, and the device it claims to be (its type and
// numbers) is kept in a trusted.* xattr. A view shows such a file as that device (st_mode
// S_IFCHR/S_IFBLK, st_rdev), so an app restoring a system tree or building an image gets back
// what it made, while the backing store never holds a real device node.
//
// Why this can't be a way out:
//   - Nothing opens it as a device. The FUSE mount is nodev (session.cpp) and so is every bind
//     the mount manager makes: the kernel refuses an open of a device inode on a nodev mount
//     with EACCES (fs/namei.c, may_open) before FUSE sees a request. The daemon itself only
//     ever opens the backing regular file, and refuses an OPEN of an inode it shows as a
//     device all the same (ops_file.cpp), should a kernel ever send one.
//   - No app can forge or read the record: trusted.* is root's (CAP_SYS_ADMIN), and the views
//     show, get, set and remove user.* xattrs only (policy::decide_xattr_name).
//   - What the host (or an older portalfsd) left on the store is read strictly: only an empty
//     regular file with the marker bit (below) and a well-formed record is shown as a device;
//     anything else is shown as what it is on disk.
//
// The marker: the backing file has S_ISGID set. A view never shows a regular file's disk
// set-gid bit (a set-gid bit an app sets is kept in a record: setid_bits.hpp), so the bit is
// free, and it keeps the xattr read off the lookup of every ordinary file: only an empty
// regular file with the bit costs a getxattr. A device's own set-id bits are kept as a regular
// file's are.

#include <sys/stat.h>
#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>

namespace portalfs::fuse::device_nodes {

/// The xattr that holds the record ("c MAJOR:MINOR" or "b MAJOR:MINOR").
inline constexpr const char* kXattr = "trusted.portalfs.device";

/// The device a backing file claims to be.
struct Device {
  mode_t type;  // S_IFCHR or S_IFBLK
  dev_t rdev;
};

/// Whether `type` (S_IFMT bits) is one the emulation makes: character or block device.
bool is_device(mode_t type);

/// The record for `device`, and back (nullopt for anything but a well-formed record).
std::string encode(const Device& device);
std::optional<Device> decode(std::string_view record);

/// Whether a backing file may be an emulated device (empty, regular, the marker bit): only
/// then is its record read.
bool may_be_device(const struct stat& backing);

/// The device the backing file behind `fd` (any fd of it, O_PATH included) claims to be, given
/// its stat; nullopt for an ordinary file.
std::optional<Device> read_device(int fd, const struct stat& backing);

/// `backing` as a view shows it: for a regular file on disk, its mode as the emulations make
/// it (set-id bits from its record, setid_bits.hpp, never from the disk), and an emulated
/// device's type and numbers in place of the regular file's. Anything else unchanged.
struct stat as_shown(int fd, const struct stat& backing);

/// Makes the emulated device `name` in `dirfd` with mode bits `perms` (set-id bits kept as
/// setid_bits.hpp says; the caller drops them if it can't keep records): an unnamed file
/// (O_TMPFILE) gets its record and marker first, then its name, so no view ever sees it half
/// made. Run as the caller's disk owner (FsCredsGuard); needs CAP_SYS_ADMIN for the record.
/// 0, or an errno (EEXIST as mknod(2) gives).
int make(int dirfd, const char* name, mode_t perms, const Device& device);

/// The disk bit that marks an emulated device (above).
inline constexpr mode_t kMarker = S_ISGID;

}  // namespace portalfs::fuse::device_nodes
