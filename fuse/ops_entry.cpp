// SPDX-License-Identifier: MIT
// Names and attributes: lookup, forget, getattr, setattr, readlink, access, statfs.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstring>

#include "common/btrfs.hpp"
#include "fuse/attr.hpp"
#include "fuse/device_nodes.hpp"
#include "fuse/filesystem_internal.hpp"
#include "fuse/setid_bits.hpp"

namespace portalfs::fuse {

using common::Errno;
using common::Result;
using policy::Op;

Result<fuse_entry_param> Filesystem::lookup(Call& call, fuse_ino_t parent, const char* name) {
  if (call.echo) return echo_lookup(parent, name);
  auto p = resolve_for(parent, Op::lookup);
  if (!p) return p.err();
  if (p->synthetic()) return synth_lookup(*static_cast<SynthInode*>(p->inode), name);
  auto e = lookup_backed(*p, name);
  if (!e && e.error() == ENOENT) return negative_entry(p->view);  // cached by the kernel (or hidden)
  return e;
}

NoReply Filesystem::forget(Call&, fuse_ino_t ino, uint64_t nlookup) {
  Inode* inode = inode_of(ino);
  if (inode->view != kNoView) table_.forget(inode, nlookup);
  return {};
}

NoReply Filesystem::forget_multi(Call&, size_t count, fuse_forget_data* forgets) {
  for (size_t i = 0; i < count; ++i) {
    Inode* inode = inode_of(forgets[i].ino);
    if (inode->view != kNoView) table_.forget(inode, forgets[i].nlookup);
  }
  return {};
}

Result<Attr> Filesystem::getattr(Call&, fuse_ino_t ino, fuse_file_info* fi) {
  auto n = resolve_for(ino, Op::getattr);
  if (!n) return n.err();
  if (n->synthetic()) return Attr{synth_stat(*static_cast<SynthInode*>(n->inode)), options_.attr_timeout};
  // An emulated device is shown as the device it claims to be (device_nodes.hpp).
  const View& view = *n->view;
  struct stat st {};
  if (const FileHandle* handle = handle_of(fi)) {
    const int fd = handle->fd.get();
    if (::fstat(fd, &st) != 0) return Errno{errno};
    return Attr{present(view, device_nodes::as_shown(fd, st)), attr_timeout(view, n->inode)};
  }
  auto fd = fd_of(*n);
  if (!fd) return fd.err();
  if (::fstatat(fd->get(), "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) return Errno{errno};
  return Attr{present(view, device_nodes::as_shown(fd->get(), st)), attr_timeout(view, n->inode)};
}

namespace {

// Where setattr's syscalls go: the open file when the kernel names one (ftruncate while
// writing it), else the inode's O_PATH fd (through /proc/self/fd for the calls that need a
// real open). Each returns 0 or an errno.
struct AttrTarget {
  int file_fd;       // -1: no open file
  int path_fd;       // the inode's O_PATH fd
  int proc_fd;       // /proc/self/fd
  std::string self;  // path_fd's name in proc_fd

  [[nodiscard]] int chmod(mode_t mode) const {
    const int rc = file_fd >= 0 ? ::fchmod(file_fd, mode) : ::fchmodat(proc_fd, self.c_str(), mode, 0);
    return rc == 0 ? 0 : errno;
  }

  [[nodiscard]] int chown(uid_t uid, gid_t gid) const {
    return ::fchownat(path_fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == 0 ? 0 : errno;
  }

  [[nodiscard]] int truncate(off_t size) const {
    int rc;
    if (file_fd >= 0) {
      rc = ::ftruncate(file_fd, size);
    } else {
      common::UniqueFd w(::openat(proc_fd, self.c_str(), O_WRONLY | O_CLOEXEC));
      rc = w ? ::ftruncate(w.get(), size) : -1;
    }
    return rc == 0 ? 0 : errno;
  }

  [[nodiscard]] int utimens(int to_set, const struct stat& attr) const {
    struct timespec tv[2];
    tv[0].tv_nsec = UTIME_OMIT;
    tv[1].tv_nsec = UTIME_OMIT;
    if (to_set & FUSE_SET_ATTR_ATIME_NOW) tv[0].tv_nsec = UTIME_NOW;
    else if (to_set & FUSE_SET_ATTR_ATIME) tv[0] = attr.st_atim;
    if (to_set & FUSE_SET_ATTR_MTIME_NOW) tv[1].tv_nsec = UTIME_NOW;
    else if (to_set & FUSE_SET_ATTR_MTIME) tv[1] = attr.st_mtim;
    int rc;
    if (file_fd >= 0) {
      rc = ::futimens(file_fd, tv);
    } else {
      // On the O_PATH fd itself: works for symlinks too (AT_EMPTY_PATH, Linux >= 5.8).
      rc = ::utimensat(path_fd, "", tv, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
    }
    return rc == 0 ? 0 : errno;
  }

  [[nodiscard]] int stat(struct stat& st) const {
    const int rc = file_fd >= 0 ? ::fstat(file_fd, &st)
                                : ::fstatat(path_fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
    return rc == 0 ? 0 : errno;
  }
};

}  // namespace

Result<Attr> Filesystem::setattr(Call& call, fuse_ino_t ino, struct stat* attr, int to_set,
                                 fuse_file_info* fi) {
  if (call.echo) return getattr(call, ino, nullptr);  // events.cpp: attrib
  auto n = resolve_for(ino, Op::setattr);
  if (!n) return n.err();
  note_setattr(to_set, *attr);
  const View& view = *n->view;
  auto fd = fd_of(*n);
  if (!fd) return fd.err();
  FileHandle* handle = handle_of(fi);
  const bool made = handle && handle->made;
  const AttrTarget target{handle ? handle->fd.get() : -1, fd->get(), proc_fd_.get(), fd_name(fd->get())};
  if ((to_set & FUSE_SET_ATTR_SIZE) && !made) {
    if (int err = check_shortening(*n, fd->get(), attr->st_size)) return Errno{err};
  }
  // A regular file on disk keeps its set-id bits in a record (setid_bits.hpp); an emulated
  // device keeps its marker bit through chmod and chown (device_nodes.hpp).
  const bool chown = to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID);
  const bool kill = to_set & FUSE_SET_ATTR_KILL_SUID;  // FATTR_KILL_SUIDGID (setid_bits.hpp)
  struct stat before {};
  if ((to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_SIZE)) || chown || kill) {
    if (int err = target.stat(before)) return Errno{err};
  }
  const bool regular = S_ISREG(before.st_mode);
  const mode_t extra = regular && device_nodes::is_device(n->inode->type) ? device_nodes::kMarker : 0;
  if (to_set & FUSE_SET_ATTR_MODE) {
    if (S_ISLNK(n->inode->type)) return Errno{EOPNOTSUPP};
    const mode_t mode = allowed_mode(view, attr->st_mode & 07777, !regular || privileges_.sys_admin);
    const int err = regular ? setid_bits::apply(fd->get(), mode, extra, before.st_mode & setid_bits::kMarker)
                            : target.chmod(mode);
    if (err) return Errno{err};
  }
  if (chown) {
    uid_t uid = static_cast<uid_t>(-1);
    gid_t gid = static_cast<gid_t>(-1);
    if (to_set & FUSE_SET_ATTR_UID) {
      auto u = chown_uid(view, attr->st_uid);
      if (!u) return Errno{EINVAL};  // unmapped: as chown in a user namespace
      uid = *u;
    }
    if (to_set & FUSE_SET_ATTR_GID) {
      auto g = chown_gid(view, attr->st_gid);
      if (!g) return Errno{EINVAL};
      gid = *g;
    }
    if (int err = target.chown(uid, gid)) return Errno{err};
  }
  if (to_set & FUSE_SET_ATTR_SIZE) {
    // Set-id bits the host left on disk go before a truncation (without_setid, attr.hpp); a
    // chmod above left none.
    const bool chmodded = to_set & FUSE_SET_ATTR_MODE;
    if (const auto mode = extra || chmodded ? std::nullopt : without_setid(before)) {
      if (int err = target.chmod(*mode)) return Errno{err};
    }
    SizeChange counted(quotas_, quota_of(view, fd->get()), fd->get());
    if (int err = counted.resize(static_cast<uint64_t>(attr->st_size))) return Errno{err};
    if (int err = target.truncate(attr->st_size)) return Errno{err};
  }
  // Set-id bits go at a chown, and at a truncation by a caller without CAP_FSETID: the kernel
  // asks (FATTR_KILL_SUIDGID). The backing file system cleared a disk's own at the chown, and
  // with them a group-executable device's marker, put back here.
  if (regular && (kill || (chown && extra))) {
    if (int err = setid_bits::settle(fd->get(), extra, kill)) return Errno{err};
  }
  if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)) {
    if (int err = target.utimens(to_set, *attr)) return Errno{err};
  }

  struct stat st {};
  if (int err = target.stat(st)) return Errno{err};
  if (!made) record_changed(view, fd->get());
  // A new size drops the siblings' pages too. Queued like every invalidation: a sibling's
  // read revalidates the size itself (attr_timeout() is 0 for files with siblings), and an
  // invalidation that lands during its read would keep a zero-filled short page at the old size.
  auto siblings = siblings_of(n->inode);
  if (to_set & FUSE_SET_ATTR_SIZE) call.data_changed(siblings, 0, 0);
  else call.attr_changed(siblings);
  note_file((to_set & FUSE_SET_ATTR_SIZE) ? Event::modified_once : Event::attrib, n->inode);
  return Attr{present(view, device_nodes::as_shown(fd->get(), st)), attr_timeout(view, n->inode)};
}

int Filesystem::check_shortening(const Node& n, int fd, off_t size) {
  // Shortening a file is a truncation (the modes that protect refuse it of others' files);
  // the handle that made the file may (ftruncate while writing it).
  if (!policy::may_refuse(Op::truncate, n.view->spec.access)) return 0;
  struct stat now {};
  if (::fstatat(fd, "", &now, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) return errno;
  return size < now.st_size ? check_made(n, Op::truncate) : 0;
}

Result<LinkTarget> Filesystem::readlink(Call&, fuse_ino_t ino) {
  auto n = resolve_for(ino, Op::readlink);
  if (!n) return n.err();
  if (n->synthetic()) return Errno{EINVAL};
  auto fd = fd_of(*n);
  if (!fd) return fd.err();
  char buf[PATH_MAX + 1];
  ssize_t len = ::readlinkat(fd->get(), "", buf, sizeof(buf));
  if (len < 0) return Errno{errno};
  if (static_cast<size_t>(len) >= sizeof(buf)) return Errno{ENAMETOOLONG};
  return LinkTarget{std::string(buf, static_cast<size_t>(len))};
}

Result<void> Filesystem::access(Call&, fuse_ino_t ino, int mask) {
  // Only sent without default_permissions (the daemon always mounts with it); kept so the
  // read-only rule holds for any mount: W_OK on a read-only view is EROFS.
  auto n = resolve_for(ino, (mask & W_OK) ? Op::setattr : Op::getattr);
  if (!n) return n.err();
  return {};
}

namespace {

// A view on a btrfs subvolume with a qgroup limit (mountmgr/quota.hpp): its limit as the size and
// its room as free, as ext4 and XFS answer for a project. The count is the last commit's.
void btrfs_limit_statfs(int fd, struct statvfs& sv) {
  const auto q = common::qgroup_limit_of(fd);
  if (!q || sv.f_frsize == 0) return;
  const uint64_t unit = sv.f_frsize;
  sv.f_blocks = (q->limit + unit - 1) / unit;
  const uint64_t room = q->limit > q->referenced ? q->limit - q->referenced : 0;
  sv.f_bfree = sv.f_bavail = std::min<uint64_t>(room / unit, sv.f_bavail);
}

}  // namespace

Result<struct statvfs> Filesystem::statfs(Call&, fuse_ino_t ino) {
  auto n = resolve_for(ino, Op::statfs);
  if (!n) return n.err();
  struct statvfs sv {};
  if (n->synthetic()) {
    sv.f_bsize = sv.f_frsize = 4096;
    sv.f_namemax = 255;
    return sv;
  }
  auto fd = fd_of(*n);
  if (!fd) return fd.err();
  // Asked of the inode itself, not of the file system: for a directory with a project quota
  // (PROJINHERIT; mountmgr/quota.hpp) ext4 and XFS answer with the project's limit as the size
  // and its room as free, so df in a view shows the app's or share's quota.
  if (::fstatvfs(fd->get(), &sv) != 0) return Errno{errno};
  btrfs_limit_statfs(fd->get(), sv);  // btrfs does not: the qgroup's limit, read here
  limit_statfs(*n->view, sv);  // the same for a limit the daemon accounts itself
  return sv;
}

}  // namespace portalfs::fuse
