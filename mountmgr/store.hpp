// SPDX-License-Identifier: MIT
#pragma once

// The backing store's identity: which file system the storage root must lead to.
//
// The storage root is often a mount point (an external disk, a second disk mounted late in
// boot). When that disk is not mounted, the path leads to the empty directory underneath, and
// serving that would show every app an empty (or wrong) directory and provision new data on
// the wrong disk. So the daemon remembers the file system it served, and serves the views only
// while the path still leads there.
//
// What identifies it: a marker file, <root>/.portalfs-store, holding a random 128-bit id,
// written once (at the first start that finds none) and recorded in state.json with the file
// system's type and source as seen then. Why a marker and not what the kernel says:
//   - st_dev and the mount source (/dev/sdb1, /dev/loop3) change from boot to boot and with
//     the order disks appear in;
//   - a UUID needs blkid/udev, which containers and minimal hosts lack, and tmpfs, overlay, NFS
//     or a bind mount have none;
//   - statfs f_fsid is derived from the device number on some file systems (xfs) and is 0 on
//     others, so it too changes across boots;
//   - the marker works on every file system, survives renumbering, and moves with the data
//     when the admin copies the store to a new disk (the data is what the views need).
// The type and source are recorded only to say what was expected when the store is missing.
// An admin who knows the disk is the right one (restored without dot files) writes the
// recorded id into the marker, as the offline message says.
//
// Checking is cheap (an open, an openat and a read of 33 bytes, a statx): the daemon checks at
// each mount change (poll(POLLPRI) on /proc/self/mountinfo) and every few seconds, never per op.

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace portalfs::mountmgr {

/// The marker file at the top of a store.
inline constexpr const char* kStoreMarker = ".portalfs-store";

/// A store as recorded in the state.
struct StoreRecord {
  std::string path;     // absolute, normalised (the storage root)
  std::string id;       // 32 lowercase hex digits, also in <path>/.portalfs-store
  std::string fs_type;  // as /proc/self/mountinfo named it when recorded ("ext4"); may be ""
  std::string source;   // the mount's source then ("/dev/sdb1"); may be ""
  friend bool operator==(const StoreRecord&, const StoreRecord&) = default;
};

/// One line of /proc/self/mountinfo, the parts we use.
struct MountInfo {
  uint64_t id = 0;
  std::string mount_point;  // unescaped
  std::string fs_type;
  std::string source;  // unescaped
  std::string propagation;    // the optional fields: "shared:1", "master:3", "" (private)
  std::string super_options;  // the file system's options: "rw,prjquota"
};

/// Parses one line of /proc/<pid>/mountinfo; nullopt when it is not one.
std::optional<MountInfo> parse_mountinfo_line(std::string_view line);
/// The mount with id `mnt_id` in a whole mountinfo text.
std::optional<MountInfo> find_mount(std::string_view mountinfo, uint64_t mnt_id);

/// What a store's path leads to now.
struct StoreProbe {
  std::string error;                  // the path can't be opened: why ("" if it was opened)
  std::optional<std::string> marker;  // the id in a valid marker
  std::string marker_problem;         // when there is none: why ("missing", "not a regular file", ...)
  uint64_t mnt_id = 0;                // the mount the path leads to (0: unknown)
  std::optional<MountInfo> mount;     // that mount's line, when asked for
  std::string fsid;                   // its file system's statfs f_fsid, hex ("": none, or 0)
};

/// Whether `text` is a store id: 32 lowercase hex digits.
bool valid_store_id(std::string_view text);
/// The id in a marker file's content ("<id>\n"); nullopt when it holds anything else.
std::optional<std::string> parse_store_marker(std::string_view content);

/// Probes the directory `dir_fd` (an O_RDONLY|O_DIRECTORY fd of the store's top).
/// `describe_mount` also reads /proc/self/mountinfo for the mount's type and source.
StoreProbe probe_store_fd(int dir_fd, bool describe_mount);
/// Opens `path` (never creating it) and probes it.
StoreProbe probe_store(const std::string& path, bool describe_mount);

/// "" when `probe` shows the store `record` describes; else one line saying what the path leads
/// to and what was expected (and how to accept the disk if it is the right one).
std::string store_mismatch(const StoreRecord& record, const StoreProbe& probe);

/// 128 random bits as 32 lowercase hex digits. Throws std::runtime_error if there is no entropy.
std::string new_store_id();

/// Writes <dir>/.portalfs-store holding `id` (a temporary file, fsync, rename, fsync of the
/// directory): complete or absent. Throws std::runtime_error naming the file.
void write_store_marker(int dir_fd, const std::string& display_dir, const std::string& id);

}  // namespace portalfs::mountmgr
