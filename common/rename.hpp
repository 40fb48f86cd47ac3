// SPDX-License-Identifier: MIT
#pragma once

// renameat2(RENAME_NOREPLACE) on every storage root portalfs supports.
//
// A FUSE file system that does not implement rename flags (GlusterFS's client: the kernel then
// answers EINVAL, fs/fuse/dir.c fuse_rename2) can't refuse to replace in one call, so the
// fallback keeps the guarantee another way:
//   - a file, symlink or special file is hard-linked under the new name (link never replaces:
//     EEXIST) and its old name removed. Between the two calls it has both names; a crash there
//     leaves an extra name inside the same parent directories, never a lost or replaced file.
//   - a directory can't be hard-linked: the new name is checked and then renamed onto. A
//     directory made under that name between the check and the rename (an empty one: rename
//     does not replace a non-empty directory, ENOTEMPTY, reported as EEXIST) could be replaced.
//     portalfs's callers rename fresh, uniquely named directories into names only they make
//     under the state lock (provisioning, trash slots), so no one races them there.

namespace portalfs::common {

/// renameat2(olddirfd, oldname, newdirfd, newname, RENAME_NOREPLACE), falling back as above
/// when the file system does not support the flag. Returns 0 or an errno (EEXIST when newname
/// exists).
int rename_noreplace(int olddirfd, const char* oldname, int newdirfd, const char* newname);

}  // namespace portalfs::common
