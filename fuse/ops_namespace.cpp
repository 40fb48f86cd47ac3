// SPDX-License-Identifier: MIT
// Changing names: mknod, mkdir, symlink, link, unlink, rmdir, rename.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "fuse/attr.hpp"
#include "fuse/filesystem_internal.hpp"

namespace portalfs::fuse {

using common::Errno;
using policy::Op;

void Filesystem::make_node(fuse_req_t req, fuse_ino_t parent, const char* name, Op op,
                           const std::function<int(int dirfd, const View& view)>& make) {
  auto p = resolve_for(parent, op);
  if (!p) return reply_err(req, p.error());
  const View& view = *p->view;
  const fuse_ctx* ctx = fuse_req_ctx(req);
  auto owner = creator(view, ctx->uid, ctx->gid);
  if (!owner) return reply_err(req, EOVERFLOW);  // the caller has no id on this view's disk
  auto pfd = fd_of(*p);
  if (!pfd) return reply_err(req, pfd.error());
  {
    FsCredsGuard as_caller(owner->uid, owner->gid);
    if (make(pfd->get(), view) != 0) return reply_err(req, errno);
  }
  int fd = ::openat(pfd->get(), name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return reply_err(req, errno);
  auto e = make_entry(view, fd);
  if (!e) return reply_err(req, e.error());
  auto parents = siblings_of(p->inode);
  fuse_reply_entry(req, &e.value());
  inval_entry(parents, name);
}

void Filesystem::mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t) {
  const Node p = resolve(parent);
  const auto kind = p.view ? p.view->spec.kind : policy::GrantKind::data;
  if (auto d = policy::decide_mknod(target_of(p), kind, mode); !d.allowed()) {
    return reply_err(req, d.err);
  }
  make_node(req, parent, name, Op::mknod, [&](int dirfd, const View& view) {
    const mode_t type = (mode & S_IFMT) ? (mode & S_IFMT) : S_IFREG;
    return ::mknodat(dirfd, name, type | allowed_mode(view, mode & 07777, false), 0);
  });
}

void Filesystem::mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  make_node(req, parent, name, Op::mkdir, [&](int dirfd, const View& view) {
    return ::mkdirat(dirfd, name, allowed_mode(view, mode & 07777, true));
  });
}

void Filesystem::symlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name) {
  // The target is stored as given and resolved by the kernel in the caller's own view;
  // the daemon never follows it.
  make_node(req, parent, name, Op::symlink,
            [&](int dirfd, const View&) { return ::symlinkat(link, dirfd, name); });
}

void Filesystem::link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname) {
  auto places = resolve_for(ino, newparent, Op::link);
  if (!places) return reply_err(req, places.error());
  const auto& [src, dst] = *places;
  auto fd = fd_of(src);
  if (!fd) return reply_err(req, fd.error());
  auto pfd = fd_of(dst);
  if (!pfd) return reply_err(req, pfd.error());
  if (::linkat(fd->get(), "", pfd->get(), newname, AT_EMPTY_PATH) != 0) return reply_err(req, errno);
  int nfd = ::openat(pfd->get(), newname, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (nfd < 0) return reply_err(req, errno);
  auto e = make_entry(*dst.view, nfd);
  if (!e) return reply_err(req, e.error());
  auto parents = siblings_of(dst.inode);
  auto siblings = siblings_of(src.inode);
  fuse_reply_entry(req, &e.value());
  inval_entry(parents, newname);
  inval_attr(siblings);  // the link count changed
}

void Filesystem::unlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  auto p = resolve_for(parent, Op::unlink);
  if (!p) return reply_err(req, p.error());
  auto pfd = fd_of(*p);
  if (!pfd) return reply_err(req, pfd.error());
  if (::unlinkat(pfd->get(), name, 0) != 0) return reply_err(req, errno);
  auto parents = siblings_of(p->inode);
  reply_err(req, 0);
  inval_entry(parents, name);
}

void Filesystem::rmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  auto p = resolve_for(parent, Op::rmdir);
  if (!p) return reply_err(req, p.error());
  auto pfd = fd_of(*p);
  if (!pfd) return reply_err(req, pfd.error());
  if (::unlinkat(pfd->get(), name, AT_REMOVEDIR) != 0) return reply_err(req, errno);
  auto parents = siblings_of(p->inode);
  reply_err(req, 0);
  inval_entry(parents, name);
}

void Filesystem::rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
                        const char* newname, unsigned int flags) {
  auto places = resolve_for(parent, newparent, Op::rename);
  if (!places) return reply_err(req, places.error());
  const auto& [from, to] = *places;
  if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) return reply_err(req, EINVAL);
  auto ffd = fd_of(from);
  if (!ffd) return reply_err(req, ffd.error());
  auto tfd = fd_of(to);
  if (!tfd) return reply_err(req, tfd.error());
  if (::renameat2(ffd->get(), name, tfd->get(), newname, flags) != 0) return reply_err(req, errno);
  auto from_parents = siblings_of(from.inode);
  auto to_parents = siblings_of(to.inode);
  reply_err(req, 0);
  inval_entry(from_parents, name);
  inval_entry(to_parents, newname);
}

}  // namespace portalfs::fuse
