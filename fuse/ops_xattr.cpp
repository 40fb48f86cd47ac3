// SPDX-License-Identifier: MIT
// Extended attributes: user.* only (policy::decide_xattr); security.*, trusted.* and
// system.* are neither shown nor writable through a view.
#include <sys/xattr.h>

#include <cstring>
#include <vector>

#include "fuse/filesystem_internal.hpp"

namespace portalfs::fuse {

using policy::Op;

Result<Xattr> Filesystem::getxattr(Call&, fuse_ino_t ino, const char* name, size_t size) {
  auto n = resolve_for(ino, Op::getxattr);
  if (!n) return n.err();
  if (n->synthetic()) return Errno{ENODATA};
  auto d = policy::decide_xattr_name(Op::getxattr, name);  // resolve_for() decided the rest
  if (!d.allowed()) return Errno{d.err};
  auto fd = fd_of(*n);
  if (!fd) return fd.err();
  std::vector<char> buf(size);
  ssize_t len = ::getxattr(proc_path(fd->get()).c_str(), name, size ? buf.data() : nullptr, size);
  if (len < 0) return Errno{errno};
  buf.resize(size ? static_cast<size_t>(len) : 0);
  return Xattr{size == 0, static_cast<size_t>(len), std::move(buf)};
}

Result<Xattr> Filesystem::listxattr(Call&, fuse_ino_t ino, size_t size) {
  auto n = resolve_for(ino, Op::listxattr);
  if (!n) return n.err();
  if (n->synthetic()) return Xattr{size == 0, 0, {}};
  auto fd = fd_of(*n);
  if (!fd) return fd.err();
  const std::string path = proc_path(fd->get());
  ssize_t len = ::listxattr(path.c_str(), nullptr, 0);
  if (len < 0) return Errno{errno};
  std::vector<char> all(static_cast<size_t>(len) + 1);
  len = ::listxattr(path.c_str(), all.data(), all.size());
  if (len < 0) return Errno{errno};
  // Keep only the names a view shows.
  std::vector<char> shown;
  for (size_t i = 0; i < static_cast<size_t>(len);) {
    const char* name = all.data() + i;
    size_t l = std::strlen(name) + 1;
    if (policy::is_user_xattr(name)) {
      shown.insert(shown.end(), name, name + l);
    }
    i += l;
  }
  if (size == 0) return Xattr{true, shown.size(), {}};
  if (shown.size() > size) return Errno{ERANGE};
  const size_t total = shown.size();
  return Xattr{false, total, std::move(shown)};
}

Result<void> Filesystem::setxattr(Call& call, fuse_ino_t ino, const char* name, const char* value,
                                  size_t size, int flags) {
  auto n = resolve_for(ino, Op::setxattr);
  if (!n) return n.err();
  auto d = policy::decide_xattr_name(Op::setxattr, name);  // resolve_for() decided the rest
  if (!d.allowed()) return Errno{d.err};
  auto fd = fd_of(*n);
  if (!fd) return fd.err();
  if (::setxattr(proc_path(fd->get()).c_str(), name, value, size, flags) != 0) return Errno{errno};
  record_changed(*n->view, fd->get());
  call.attr_changed(siblings_of(n->inode));
  note_file(Event::attrib, n->inode);
  return {};
}

Result<void> Filesystem::removexattr(Call& call, fuse_ino_t ino, const char* name) {
  auto n = resolve_for(ino, Op::removexattr);
  if (!n) return n.err();
  auto d = policy::decide_xattr_name(Op::removexattr, name);  // resolve_for() decided the rest
  if (!d.allowed()) return Errno{d.err};
  auto fd = fd_of(*n);
  if (!fd) return fd.err();
  if (::removexattr(proc_path(fd->get()).c_str(), name) != 0) return Errno{errno};
  record_changed(*n->view, fd->get());
  call.attr_changed(siblings_of(n->inode));
  note_file(Event::attrib, n->inode);
  return {};
}

}  // namespace portalfs::fuse
