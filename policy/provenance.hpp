// SPDX-License-Identifier: MIT
#pragma once

// Provenance: which app created a file, and which last changed it, kept on the backing file
// itself as extended attributes in the trusted.* namespace. So it survives daemon restarts,
// app removal, renames and moves within the file system (it belongs to the inode), apps can
// neither see nor forge it (views show and write user.* only, policy::decide_xattr), and only
// root on the host reads it (getfattr -n trusted.portalfs.created_by FILE). Recorded for
// every file and directory made through a shared or host view; a data view is its app's alone.
//
//   created_by  the app id that made it; absent: made on the host or before portalfs
//               recorded it
//   changed_by  the app id that last changed it (contents, attributes, xattrs), when that is
//               not the app that created it; absent: not changed since, or by its creator

namespace portalfs::policy {

inline constexpr const char* kCreatedByXattr = "trusted.portalfs.created_by";
inline constexpr const char* kChangedByXattr = "trusted.portalfs.changed_by";

}  // namespace portalfs::policy
