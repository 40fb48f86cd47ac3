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
                           const std::function<int(int dirfd)>& make) {
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
    if (make(pfd->get()) != 0) return reply_err(req, errno);
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
  auto p = resolve_for(parent, Op::mknod);  // hidden and read-only rank before the file type
  if (!p) return reply_err(req, p.error());
  const bool shared = p && !p->synthetic() && p->view->is_shared();
  switch (mode & S_IFMT) {
    case S_IFREG:
      break;
    case S_IFIFO:
    case S_IFSOCK:
      // A fifo or socket in a directory several apps share is a channel between them.
      if (shared) return reply_err(req, EPERM);
      break;
    default:
      return reply_err(req, EPERM);  // device nodes: never
  }
  make_node(req, parent, name, Op::mknod, [&](int dirfd) {
    mode_t m = (mode & S_IFMT) | allowed_mode(*p->view, mode & 07777, false);
    return ::mknodat(dirfd, name, m, 0);
  });
}

void Filesystem::mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  auto p = resolve(parent);
  if (!p) return reply_err(req, p.error());
  make_node(req, parent, name, Op::mkdir, [&](int dirfd) {
    mode_t m = p->synthetic() ? mode : allowed_mode(*p->view, mode & 07777, true);
    return ::mkdirat(dirfd, name, m);
  });
}

void Filesystem::symlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name) {
  // The target is stored as given and resolved by the kernel in the caller's own view;
  // the daemon never follows it.
  make_node(req, parent, name, Op::symlink,
            [&](int dirfd) { return ::symlinkat(link, dirfd, name); });
}

void Filesystem::link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname) {
  auto src = resolve(ino);
  auto dst = resolve(newparent);
  if (!src) return reply_err(req, src.error());
  if (!dst) return reply_err(req, dst.error());
  if (src->synthetic() || dst->synthetic()) return reply_err(req, src->synthetic() ? EPERM : EROFS);
  auto d = policy::decide(Op::link, {true, src->view->spec.access}, {true, dst->view->spec.access},
                          src->view->id == dst->view->id);
  if (!d.allowed()) return reply_err(req, d.err);
  auto fd = fd_of(*src);
  if (!fd) return reply_err(req, fd.error());
  auto pfd = fd_of(*dst);
  if (!pfd) return reply_err(req, pfd.error());
  if (::linkat(fd->get(), "", pfd->get(), newname, AT_EMPTY_PATH) != 0) return reply_err(req, errno);
  int nfd = ::openat(pfd->get(), newname, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (nfd < 0) return reply_err(req, errno);
  auto e = make_entry(*dst->view, nfd);
  if (!e) return reply_err(req, e.error());
  auto parents = siblings_of(dst->inode);
  auto siblings = siblings_of(src->inode);
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
  auto from = resolve(parent);
  auto to = resolve(newparent);
  if (!from) return reply_err(req, from.error());
  if (!to) return reply_err(req, to.error());
  if (from->synthetic() || to->synthetic()) return reply_err(req, EROFS);
  auto d = policy::decide(Op::rename, {true, from->view->spec.access}, {true, to->view->spec.access},
                          from->view->id == to->view->id);
  if (!d.allowed()) return reply_err(req, d.err);
  if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) return reply_err(req, EINVAL);
  auto ffd = fd_of(*from);
  if (!ffd) return reply_err(req, ffd.error());
  auto tfd = fd_of(*to);
  if (!tfd) return reply_err(req, tfd.error());
  if (::renameat2(ffd->get(), name, tfd->get(), newname, flags) != 0) return reply_err(req, errno);
  auto from_parents = siblings_of(from->inode);
  auto to_parents = siblings_of(to->inode);
  reply_err(req, 0);
  inval_entry(from_parents, name);
  inval_entry(to_parents, newname);
}

}  // namespace portalfs::fuse
