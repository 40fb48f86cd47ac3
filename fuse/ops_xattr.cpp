// SPDX-License-Identifier: MIT
// Extended attributes: user.* only (policy::decide_xattr); security.*, trusted.* and
// system.* are neither shown nor writable through a view.
#include <sys/xattr.h>

#include <cstring>
#include <vector>

#include "fuse/filesystem_internal.hpp"

namespace portalfs::fuse {

using policy::Op;

namespace {
// xattr syscalls have no *at form: go through the fd's /proc entry, which names the inode
// itself (for a symlink's O_PATH fd, the link).
std::string proc_path(int fd) { return "/proc/self/fd/" + std::to_string(fd); }
}  // namespace

void Filesystem::getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  auto n = resolve_for(ino, Op::getxattr);
  if (!n) return reply_err(req, n.error());
  if (n->synthetic()) return reply_err(req, ENODATA);
  auto d = policy::decide_xattr(Op::getxattr, target_of(*n), name);
  if (!d.allowed()) return reply_err(req, d.err);
  auto fd = fd_of(*n);
  if (!fd) return reply_err(req, fd.error());
  std::vector<char> buf(size);
  ssize_t len = ::getxattr(proc_path(fd->get()).c_str(), name, size ? buf.data() : nullptr, size);
  if (len < 0) return reply_err(req, errno);
  if (size == 0) {
    fuse_reply_xattr(req, static_cast<size_t>(len));
  } else {
    fuse_reply_buf(req, buf.data(), static_cast<size_t>(len));
  }
}

void Filesystem::listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  auto n = resolve_for(ino, Op::listxattr);
  if (!n) return reply_err(req, n.error());
  if (n->synthetic()) return size == 0 ? (void)fuse_reply_xattr(req, 0) : (void)fuse_reply_buf(req, nullptr, 0);
  auto fd = fd_of(*n);
  if (!fd) return reply_err(req, fd.error());
  const std::string path = proc_path(fd->get());
  ssize_t len = ::listxattr(path.c_str(), nullptr, 0);
  if (len < 0) return reply_err(req, errno);
  std::vector<char> all(static_cast<size_t>(len) + 1);
  len = ::listxattr(path.c_str(), all.data(), all.size());
  if (len < 0) return reply_err(req, errno);
  // Keep only the names a view shows.
  std::vector<char> shown;
  for (size_t i = 0; i < static_cast<size_t>(len);) {
    const char* name = all.data() + i;
    size_t l = std::strlen(name) + 1;
    if (policy::decide_xattr(Op::getxattr, target_of(*n), name).allowed()) {
      shown.insert(shown.end(), name, name + l);
    }
    i += l;
  }
  if (size == 0) return (void)fuse_reply_xattr(req, shown.size());
  if (shown.size() > size) return reply_err(req, ERANGE);
  fuse_reply_buf(req, shown.data(), shown.size());
}

void Filesystem::setxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value,
                          size_t size, int flags) {
  auto n = resolve_for(ino, Op::setxattr);
  if (!n) return reply_err(req, n.error());
  auto d = policy::decide_xattr(Op::setxattr, target_of(*n), name);
  if (!d.allowed()) return reply_err(req, d.err);
  auto fd = fd_of(*n);
  if (!fd) return reply_err(req, fd.error());
  if (::setxattr(proc_path(fd->get()).c_str(), name, value, size, flags) != 0) {
    return reply_err(req, errno);
  }
  auto siblings = siblings_of(n->inode);
  reply_err(req, 0);
  inval_attr(siblings);
}

void Filesystem::removexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  auto n = resolve_for(ino, Op::removexattr);
  if (!n) return reply_err(req, n.error());
  auto d = policy::decide_xattr(Op::removexattr, target_of(*n), name);
  if (!d.allowed()) return reply_err(req, d.err);
  auto fd = fd_of(*n);
  if (!fd) return reply_err(req, fd.error());
  if (::removexattr(proc_path(fd->get()).c_str(), name) != 0) return reply_err(req, errno);
  auto siblings = siblings_of(n->inode);
  reply_err(req, 0);
  inval_attr(siblings);
}

}  // namespace portalfs::fuse
