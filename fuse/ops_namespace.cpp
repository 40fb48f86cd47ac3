// SPDX-License-Identifier: MIT
// Changing names: mknod, mkdir, symlink, link, unlink, rmdir, rename.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "common/log.hpp"
#include "fuse/attr.hpp"
#include "fuse/device_nodes.hpp"
#include "fuse/filesystem_internal.hpp"
#include "fuse/setid_bits.hpp"

namespace portalfs::fuse {

using common::Errno;
using policy::Op;

Result<fuse_entry_param> Filesystem::make_node(
    Call& call, const Node& p, const char* name,
    const std::function<int(int dirfd, const View& view)>& make) {
  const View& view = *p.view;
  auto owner = creator(view, call.uid, call.gid);
  if (!owner) return Errno{EOVERFLOW};  // the caller has no id on this view's disk
  if (!privileges_.other_owners && !creatable_without_setuid(*owner)) {
    return Errno{refuse_owner(view, *owner, "create")};
  }
  auto pfd = fd_of(p);
  if (!pfd) return pfd.err();
  InodeCharge charge(inode_shares_, view.id);  // past the app's share nothing is made
  if (charge.refused()) return Errno{ENFILE};
  // A limited view's (quota_account.hpp): its step locks held until a recount is told.
  const QuotaCounters counters = quota_all(view);
  QuotaSteps steps(counters);
  if (int err = take_inode(view)) return Errno{err};
  {
    FsCredsGuard as_caller(owner->uid, owner->gid);
    if (make(pfd->get(), view) != 0) {
      const int err = errno;
      give_inode(view);
      return Errno{err};
    }
  }
  int fd = ::openat(pfd->get(), name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return Errno{errno};
  record_made(view, fd);
  quota_entered(counters, pfd->get(), fd, /*made=*/true);
  auto e = make_entry(view, fd, &charge);
  if (e) {
    if (!note_created(p, name, e->attr.st_mode, e->ino)) {
      call.entry_changed(siblings_of(p.inode), name);
    }
  }
  return e;
}

Result<fuse_entry_param> Filesystem::mknod(Call& call, fuse_ino_t parent, const char* name,
                                           mode_t mode, dev_t rdev) {
  if (call.echo) return echo_made(parent, name);  // events.cpp
  const Node p = resolve(parent);
  note_node(p, Op::mknod, name);
  const auto kind = p.view ? p.view->spec.kind : policy::GrantKind::data;
  if (auto d = policy::decide_mknod(target_of(p), kind, mode); !d.allowed()) {
    // A read view's sidecars are regular files.
    const bool regular = (mode & S_IFMT) == 0 || (mode & S_IFMT) == S_IFREG;
    if (d.err != EROFS || !has_sidecars(p) || !regular) return Errno{d.err};
    if (int err = check_sidecar(p, Op::mknod, name)) return Errno{err};
  }
  const mode_t type = (mode & S_IFMT) ? (mode & S_IFMT) : S_IFREG;
  if (device_nodes::is_device(type)) {
    // Emulated (device_nodes.hpp): its record is a trusted.* xattr, which takes CAP_SYS_ADMIN.
    if (!privileges_.sys_admin) {
      common::log_once(common::LogLevel::warn, "mknod-device",
                       "mknod of a device node refused (EPERM): emulating one takes CAP_SYS_ADMIN "
                       "(trusted.* xattrs), which this daemon does not have",
                       {p.view->spec.app, p.view->spec.dir_name, "mknod", EPERM});
      return Errno{EPERM};
    }
    return make_node(call, p, name, [&](int dirfd, const View& view) {
      const int err = device_nodes::make(dirfd, name, allowed_mode(view, mode & 07777, true),
                                         device_nodes::Device{type, rdev});
      errno = err;
      return err == 0 ? 0 : -1;
    });
  }
  if (type == S_IFREG) {  // set-id bits in a record (setid_bits.hpp)
    return make_node(call, p, name, [&](int dirfd, const View& view) {
      const int err = setid_bits::make(dirfd, name, allowed_mode(view, mode & 07777, privileges_.sys_admin));
      errno = err;
      return err == 0 ? 0 : -1;
    });
  }
  return make_node(call, p, name, [&](int dirfd, const View& view) {
    return ::mknodat(dirfd, name, type | allowed_mode(view, mode & 07777, true), 0);
  });
}

Result<fuse_entry_param> Filesystem::mkdir(Call& call, fuse_ino_t parent, const char* name, mode_t mode) {
  if (call.echo) return echo_made(parent, name);
  auto p = resolve_for(parent, Op::mkdir, name);
  if (!p) return p.err();
  return make_node(call, *p, name, [&](int dirfd, const View& view) {
    return ::mkdirat(dirfd, name, allowed_mode(view, mode & 07777, true));
  });
}

Result<fuse_entry_param> Filesystem::symlink(Call& call, const char* link, fuse_ino_t parent,
                                             const char* name) {
  if (call.echo) return echo_made(parent, name);
  // The target is stored as given and resolved by the kernel in the caller's own view;
  // the daemon never follows it.
  auto p = resolve_for(parent, Op::symlink, name);
  if (!p) return p.err();
  return make_node(call, *p, name,
                   [&](int dirfd, const View&) { return ::symlinkat(link, dirfd, name); });
}

Result<fuse_entry_param> Filesystem::link(Call& call, fuse_ino_t ino, fuse_ino_t newparent,
                                          const char* newname) {
  auto places = resolve_for(ino, newparent, Op::link, nullptr, newname);
  if (!places) return places.err();
  const auto& [src, dst] = *places;
  auto fd = fd_of(src);
  if (!fd) return fd.err();
  auto pfd = fd_of(dst);
  if (!pfd) return pfd.err();
  // A new name counts nothing, but a recount must hear of it (quota_account.hpp).
  const QuotaCounters counters = quota_all(*dst.view);
  QuotaSteps steps(counters);
  if (::linkat(fd->get(), "", pfd->get(), newname, AT_EMPTY_PATH) != 0) return Errno{errno};
  int nfd = ::openat(pfd->get(), newname, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (nfd < 0) return Errno{errno};
  quota_entered(counters, pfd->get(), nfd, /*made=*/false);
  auto e = make_entry(*dst.view, nfd);
  if (!e) return e;
  if (!note_created(dst, newname, e->attr.st_mode, e->ino)) {
    call.entry_changed(siblings_of(dst.inode), newname);
  }
  call.attr_changed(siblings_of(src.inode));  // the link count changed
  note_file(Event::attrib, src.inode);
  return e;
}

Result<void> Filesystem::unlink(Call& call, fuse_ino_t parent, const char* name) {
  if (call.echo) return {};  // events.cpp
  auto p = resolve_for(parent, Op::unlink, name);
  if (!p) return p.err();
  auto pfd = fd_of(*p);
  if (!pfd) return pfd.err();
  if (int err = check_entry(*p->view, pfd->get(), name, Op::unlink)) return Errno{err};
  Removal counted(quotas_, quota_of(*p->view, pfd->get(), name), pfd->get(), name);
  if (int err = remove_entry(*p->view, pfd->get(), name, /*dir=*/false)) return Errno{err};
  counted.done();
  call.entry_changed(siblings_of(p->inode), name);
  note_deleted(p->inode, name, S_IFREG);
  return {};
}

Result<void> Filesystem::rmdir(Call& call, fuse_ino_t parent, const char* name) {
  if (call.echo) return {};
  auto p = resolve_for(parent, Op::rmdir, name);
  if (!p) return p.err();
  auto pfd = fd_of(*p);
  if (!pfd) return pfd.err();
  if (int err = check_entry(*p->view, pfd->get(), name, Op::rmdir)) return Errno{err};
  Removal counted(quotas_, quota_of(*p->view, pfd->get(), name), pfd->get(), name);
  if (int err = remove_entry(*p->view, pfd->get(), name, /*dir=*/true)) return Errno{err};
  counted.done();
  call.entry_changed(siblings_of(p->inode), name);
  note_deleted(p->inode, name, S_IFDIR);
  return {};
}

Result<void> Filesystem::rename(Call& call, fuse_ino_t parent, const char* name,
                                fuse_ino_t newparent, const char* newname, unsigned int flags) {
  if (call.echo) return {};
  auto places = resolve_for(parent, newparent, Op::rename, name, newname);
  if (!places) return places.err();
  const auto& [from, to] = *places;
  if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) return Errno{EINVAL};
  auto ffd = fd_of(from);
  if (!ffd) return ffd.err();
  auto tfd = fd_of(to);
  if (!tfd) return tfd.err();
  // The entry moved, and the one it replaces (or, exchanged, moves the other way).
  if (int err = check_entry(*from.view, ffd->get(), name, Op::rename)) return Errno{err};
  if (!(flags & RENAME_NOREPLACE)) {
    if (int err = check_entry(*to.view, tfd->get(), newname, Op::rename)) return Errno{err};
  }
  // A file a plain rename replaces goes to the share's trash (if it has one), as a delete
  // would; RENAME_NOREPLACE replaces nothing and RENAME_EXCHANGE keeps both files.
  // The entry a plain rename replaces leaves a limited view's count (quota_account.hpp), to
  // the trash or for good; a rename within a view moves nothing else in or out of it, but a
  // recount must hear where names went. The step locks of both views' limits, held to the end.
  QuotaCounters counters = quota_all(*to.view);
  if (from.view != to.view) {
    for (auto& c : quota_all(*from.view)) counters.push_back(std::move(c));
  }
  QuotaSteps steps(counters);
  std::optional<Removal> replaced;
  if (!flags) replaced.emplace(quotas_, quota_of(*to.view, tfd->get(), newname), tfd->get(), newname, ffd->get(), name);
  const std::string kept = flags ? std::string() : keep_replaced(*to.view, ffd->get(), name, tfd->get(), newname);
  if (::renameat2(ffd->get(), name, tfd->get(), newname, flags) != 0) {
    const int err = errno;
    drop_kept(*to.view, kept);
    return Errno{err};
  }
  if (replaced) replaced->done();
  if (!counters.empty()) {
    // Where the names went: the one moved, and with RENAME_EXCHANGE the other one too.
    auto tell = [&](int dir, const char* entry) {
      common::UniqueFd moved(::openat(dir, entry, O_PATH | O_NOFOLLOW | O_CLOEXEC));
      if (moved) quota_entered(counters, dir, moved.get(), /*made=*/false);
    };
    tell(tfd->get(), newname);
    if (flags & RENAME_EXCHANGE) tell(ffd->get(), name);
  }
  if ((flags & RENAME_EXCHANGE) || !note_moved(from.inode, name, to.inode, tfd->get(), newname)) {
    call.entry_changed(siblings_of(from.inode), name);
    call.entry_changed(siblings_of(to.inode), newname);
  }
  return {};
}

}  // namespace portalfs::fuse
