// SPDX-License-Identifier: MIT
#pragma once

// The access decision: a pure function from (what the view grants, what the op does) to
// allow or an errno. The filesystem asks; it never decides on its own.
//
// Hide or deny, ranked (the first that applies wins):
//   1. ENOENT  the target is not granted to the app at all (another app's files, a revoked share)
//   2. EROFS   a mutation of the read-only directories above the views (/, apps/<app>/...)
//   3. EXDEV   link or rename between two different views
//   4. EROFS   a mutation through a read-only view
//   5. EPERM   an xattr write outside the user.* namespace; a device node, fifo or socket
//              where several apps meet

#include <cstdint>
#include <string_view>

#include "policy/grant.hpp"

namespace portalfs::policy {

enum class Op {
  lookup, getattr, readlink, readdir, statfs, open_read, read, getxattr, listxattr,
  flush, fsync,
  open_write, write, create, mknod, mkdir, symlink, link, unlink, rmdir, rename, setattr,
  setxattr, removexattr, fallocate, copy_into,
  truncate,  // a setattr or open that shortens a file (O_TRUNC, a smaller size)
};

/// True for every op that changes the filesystem (the ones a read-only view refuses).
bool is_mutation(Op op);

/// What the op is aimed at: a granted view and its access, a directory above the views, or
/// nothing (a view that is not, or no longer, granted: it is hidden).
struct Target {
  bool granted = false;
  Access access = Access::read;
  bool above_views = false;  // /, apps/, apps/<app>/, apps/<app>/<kind>/: read-only

  static constexpr Target hidden() { return {}; }
  static constexpr Target view(Access access) { return {true, access}; }
  static constexpr Target above() { return {true, Access::read, true}; }
  friend bool operator==(const Target&, const Target&) = default;
};

/// 0 = allowed, else a positive errno.
struct Decision {
  int err = 0;
  [[nodiscard]] bool allowed() const { return err == 0; }
  friend bool operator==(const Decision&, const Decision&) = default;
};

/// One view, one op.
Decision decide(Op op, Target target);

/// Ops that join two places (link, rename, copy_into): `from` is the source, `to` the
/// destination; `same_view` tells whether both are the same view.
Decision decide(Op op, Target from, Target to, bool same_view);

/// Extended attributes: reading and writing is for the "user." namespace only; a write
/// (set/remove) elsewhere is EPERM, a read elsewhere is ENODATA (it is simply not there).
Decision decide_xattr(Op op, Target target, std::string_view name);
/// The namespace part of decide_xattr(), for an op decide() (or decide_sidecar()) allowed.
Decision decide_xattr_name(Op op, std::string_view name);

/// Who made a file or directory, as the grant modes that protect see it (policy::protects()):
/// the app asking (its provenance names the view's app), or anyone else (another app, the
/// host, or nobody recorded: a file from before, or made on the host).
enum class Maker { app, other };

/// The grant modes that protect: `op` on a file or directory made by `maker`, once decide()
/// allowed `op` on the view. Asked of the inode the op acts on; for unlink, rmdir and rename
/// of the entry they remove or move (and of a rename's replaced destination). The ops that add
/// an entry (create, mknod, mkdir, symlink) act on the parent and are always allowed: adding is
/// what each of these modes is for. I/O on open files (write, fallocate, copy_into, flush, fsync) was
/// decided at its open. Any other mode allows everything decide() allowed.
///   create_only  other: reads EACCES, changes EPERM; own: reopening to write and truncation
///                EPERM (a drop is sealed once closed), the rest allowed
///   no_delete    other: unlink, rmdir, rename, truncate EPERM
///   own_files    other: every change EPERM
Decision decide_made(Op op, Access access, Maker maker);

/// Whether decide_made() refuses `op` in `access` for some maker: the filesystem looks at the
/// target (and reads its provenance, if the answer depends on it) only then.
bool may_refuse(Op op, Access access);

/// Whether a view of `access` shows an entry (lookup and readdir): a create-only view hides
/// the files others made (ENOENT, unlisted) and shows directories, so the app can drop into
/// the folders the user made.
bool shows(Access access, Maker maker, bool is_dir);

/// A read view with sidecar patterns (Grant::sidecars), once decide() said EROFS: creating a
/// regular file (create, mknod) whose name is a sidecar's (`sidecar_name`); changing, removing
/// (unlink) and renaming to a sidecar's name (`sidecar_name`: the new one) what the app made
/// (`maker`; a rename also asks of the entry it replaces). Everything else stays EROFS, the
/// sidecars others made included: a read grant never changes a file the app did not make.
Decision decide_sidecar(Op op, Maker maker, bool sidecar_name);

/// Whether an xattr name is in the namespace views show ("user."); listxattr filters by it.
bool is_user_xattr(std::string_view name);

/// mknod of a file of type `mode & S_IFMT` in a view of `kind`: decide(Op::mknod, target), then
/// EPERM for a fifo, socket or device node in a shared or host view: only an app's own data
/// directory may hold special files (a fifo or socket is a channel between apps; a device node,
/// emulated and never openable, is of no use to another app or the host, who would see an
/// empty file). Regular files (and a mode without a type, which mknod(2) makes a regular file)
/// are allowed everywhere.
Decision decide_mknod(Target target, GrantKind kind, uint32_t mode);

}  // namespace portalfs::policy
