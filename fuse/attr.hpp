// SPDX-License-Identifier: MIT
#pragma once

// What a view shows of a backing file, and who a caller is on disk.
//
// Presented attributes depend only on (view, backing file), never on who asks: the kernel
// caches them per inode and checks permissions against them (default_permissions).

#include <sys/stat.h>

#include <optional>

#include "fuse/views.hpp"

namespace portalfs::fuse {

/// The stat a view presents for a backing stat as the emulations show it
/// (device_nodes::as_shown): owner mapped (or squashed); set-uid and set-gid stripped in
/// shared views. A data view shows them: a regular file's come from its record
/// (setid_bits.hpp), never from the disk.
struct stat present(const View& view, const struct stat& backing);

/// The mode bits a view lets a caller set (chmod, create, mknod, mkdir): all of them in a data
/// view, where a regular file's set-uid and set-gid bits go to its record (setid_bits.hpp),
/// so only when `records` (the daemon can write one: CAP_SYS_ADMIN); a directory, fifo or
/// socket keeps them on disk (pass true). Set-uid and set-gid never in a shared view.
mode_t allowed_mode(const View& view, mode_t mode, bool records);

/// The mode that clears a regular file's set-uid and set-gid bits on disk, or nullopt if it
/// has none: only the host can have put them there (an app's are kept in a record). The daemon
/// clears them before an app may change the file's contents (an open for writing, a
/// truncation), as the kernel does at a write: it takes FUSE_HANDLE_KILLPRIV_V2
/// (session_io.hpp), and a passed-through write is the daemon's own on the backing file
/// (root's, with CAP_FSETID, which keeps them).
std::optional<mode_t> without_setid(const struct stat& st);

/// The disk owner a caller with these host ids creates files as, or nullopt when the view's
/// map does not cover the caller (the op then fails with EOVERFLOW, as an idmapped mount does).
struct DiskOwner {
  uid_t uid;
  gid_t gid;
};
std::optional<DiskOwner> creator(const View& view, uid_t host_uid, gid_t host_gid);

/// Whether a daemon without CAP_SETUID (rootless: privileges.hpp) can create as `owner`: its
/// own uid, and its own gid or one of its groups. When it can't, the create fails with EPERM
/// (logged once per view), never made as the daemon's user instead.
bool creatable_without_setuid(const DiskOwner& owner);
/// Logs the refusal (once per view) and returns EPERM.
int refuse_owner(const View& view, const DiskOwner& owner, const char* op);

/// The disk id a chown to presented id `host_id` means, or nullopt (unmapped: EINVAL as the
/// kernel does for an idmapped mount; squash views accept only the presented owner).
std::optional<uid_t> chown_uid(const View& view, uid_t host_id);
std::optional<gid_t> chown_gid(const View& view, gid_t host_id);

/// Switches this thread's fsuid/fsgid for the guard's lifetime (raw syscalls: glibc's
/// wrappers would change every thread). The thread keeps its capabilities (SECBIT_NO_SETUID_FIXUP),
/// so the backing file system does not re-check what the kernel already checked against the
/// presented owner; only the owner of what is created changes.
class FsCredsGuard {
 public:
  FsCredsGuard(uid_t uid, gid_t gid);
  ~FsCredsGuard();
  FsCredsGuard(const FsCredsGuard&) = delete;
  FsCredsGuard& operator=(const FsCredsGuard&) = delete;

 private:
  uid_t old_uid_;
  gid_t old_gid_;
};

}  // namespace portalfs::fuse
