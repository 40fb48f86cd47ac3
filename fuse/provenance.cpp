// SPDX-License-Identifier: MIT
// Provenance (policy/provenance.hpp) and the rules that depend on it (the grant modes that
// protect, a read view's sidecars): who made a file is
// read from its backing file's trusted.portalfs.created_by when a view's mode may refuse an op
// by it (policy::may_refuse), and recorded when a shared or host view makes or changes one.
//
// No cache: the attribute is read only for the ops a protecting mode decides by maker (a
// delete, a rename, an open for writing...), one getxattr on the inode's O_PATH fd, and a
// cached answer could outlive the inode number it was cached for.
//
// Unlink and rename decide on the entry they find, then act by name: another view (or the
// host) swapping a file the caller may remove for one it may not, between the check and the
// act, gets the second removed. The caller's own view can't make that swap (renaming another's
// file is refused to it), so an app can't use it against the rule.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>

#include "common/log.hpp"
#include "fuse/filesystem_internal.hpp"
#include "policy/provenance.hpp"

namespace portalfs::fuse {

using common::Errno;
using policy::Maker;
using policy::Op;

bool Filesystem::records(const View& view) const { return options_.provenance && view.is_shared(); }

namespace {
// The entry `name` of `dirfd` itself (a symlink not followed), to read its provenance.
common::UniqueFd open_entry(int dirfd, const char* name) {
  return common::UniqueFd(::openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC));
}
}  // namespace

Maker Filesystem::maker_of(const View& view, int fd) {
  char buf[256];
  const ssize_t len = ::getxattr(proc_path(fd).c_str(), policy::kCreatedByXattr, buf, sizeof(buf));
  const bool own = len >= 0 && std::string_view(buf, static_cast<size_t>(len)) == view.spec.app;
  return own ? Maker::app : Maker::other;
}

int Filesystem::decide_made_for(const View& view, int fd, Op op) {
  const policy::Access access = view.spec.access;
  const policy::Decision own = policy::decide_made(op, access, Maker::app);
  const policy::Decision others = policy::decide_made(op, access, Maker::other);
  if (own == others) return own.err;  // no need to know who made it
  return (maker_of(view, fd) == Maker::app ? own : others).err;
}

int Filesystem::check_made(const Node& node, Op op) {
  if (!node.view || !policy::may_refuse(op, node.view->spec.access)) return 0;
  auto fd = fd_of(node);
  if (!fd) return fd.error();
  return decide_made_for(*node.view, fd->get(), op);
}

int Filesystem::check_entry(const View& view, int dirfd, const char* name, Op op) {
  if (!policy::may_refuse(op, view.spec.access)) return 0;
  common::UniqueFd fd = open_entry(dirfd, name);
  if (!fd) return 0;  // nothing there: the op itself says so
  return decide_made_for(view, fd.get(), op);
}

bool Filesystem::shown(const View& view, int fd) {
  if (view.spec.access != policy::Access::create_only) return true;  // the common case: no syscall
  struct stat st {};
  if (::fstat(fd, &st) != 0) return false;
  return policy::shows(view.spec.access, maker_of(view, fd), S_ISDIR(st.st_mode));
}

bool Filesystem::shown(const View& view, int dirfd, const char* name) {
  if (view.spec.access != policy::Access::create_only) return true;
  common::UniqueFd fd = open_entry(dirfd, name);
  return fd && shown(view, fd.get());
}

// ---- sidecars: a read view's files named like its patterns ----

int Filesystem::check_sidecar(const Node& node, Op op, const char* name) {
  const auto& patterns = node.view->spec.sidecars;
  if (op == Op::create || op == Op::mknod) {
    return policy::decide_sidecar(op, Maker::app, name && policy::is_sidecar(patterns, name)).err;
  }
  if (!policy::decide_sidecar(op, Maker::app, true).allowed()) return EROFS;  // for no maker
  auto fd = fd_of(node);
  if (!fd) return fd.error();
  if (op != Op::unlink) return policy::decide_sidecar(op, maker_of(*node.view, fd->get()), false).err;
  if (!name) return EROFS;
  common::UniqueFd entry = open_entry(fd->get(), name);
  if (!entry) return errno;
  return policy::decide_sidecar(op, maker_of(*node.view, entry.get()), false).err;
}

int Filesystem::check_sidecar_rename(const Node& from, const char* name, const Node& to,
                                     const char* new_name) {
  // Both names a sidecar's (an exchange moves the replaced file to `name`), the file moved
  // and the one it replaces (if any) the app's own.
  const auto& patterns = to.view->spec.sidecars;
  if (!name || !new_name || !policy::is_sidecar(patterns, name) || !policy::is_sidecar(patterns, new_name)) {
    return EROFS;
  }
  auto ffd = fd_of(from);
  if (!ffd) return ffd.error();
  common::UniqueFd moved = open_entry(ffd->get(), name);
  if (!moved) return errno;
  if (int err = policy::decide_sidecar(Op::rename, maker_of(*from.view, moved.get()), true).err) return err;
  auto tfd = fd_of(to);
  if (!tfd) return tfd.error();
  common::UniqueFd replaced = open_entry(tfd->get(), new_name);
  if (!replaced) return 0;
  return policy::decide_sidecar(Op::rename, maker_of(*to.view, replaced.get()), true).err;
}

namespace {
void warn_unrecorded(const View& view, int err) {
  // Not fatal: the file is made and served. In a mode that protects, it then counts as
  // another's, so its own app can't change or delete it: say what to fix.
  common::log_once(common::LogLevel::error, "provenance:" + view.spec.backing,
                   "cannot record which app made or changed a file in " + view.spec.backing + ": " +
                       std::strerror(err) +
                       "; the backing file system must support trusted.* extended attributes "
                       "(ext4, xfs, btrfs, tmpfs do); until then its files count as no app's",
                   {view.spec.app, view.spec.dir_name, "setxattr", err});
}
}  // namespace

void Filesystem::record_made(const View& view, int fd) {
  if (!records(view)) return;
  const std::string& app = view.spec.app;
  // A created file's fd is open: no path walk through /proc. An O_PATH fd (mkdir, mknod,
  // symlink) can't be given to fsetxattr (EBADF at once), so its /proc name is.
  int rc = ::fsetxattr(fd, policy::kCreatedByXattr, app.data(), app.size(), 0);
  if (rc != 0 && errno == EBADF) {
    rc = ::setxattr(proc_path(fd).c_str(), policy::kCreatedByXattr, app.data(), app.size(), 0);
  }
  if (rc != 0) warn_unrecorded(view, errno);
}

void Filesystem::record_changed(const View& view, int fd) {
  if (!records(view)) return;
  const std::string path = proc_path(fd);
  const std::string& app = view.spec.app;
  int rc;
  if (maker_of(view, fd) == Maker::app) {
    // Changed by its creator: no changed_by says so (and costs no write when there is none).
    rc = ::removexattr(path.c_str(), policy::kChangedByXattr);
    if (rc != 0 && errno == ENODATA) rc = 0;
  } else {
    rc = ::setxattr(path.c_str(), policy::kChangedByXattr, app.data(), app.size(), 0);
  }
  if (rc != 0) warn_unrecorded(view, errno);
}

}  // namespace portalfs::fuse
