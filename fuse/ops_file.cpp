// SPDX-License-Identifier: MIT
// Open files: open, create, read, write, flush, fsync, release, fallocate, lseek,
// copy_file_range.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "common/btrfs.hpp"
#include "fuse/attr.hpp"
#include "fuse/device_nodes.hpp"
#include "fuse/filesystem_internal.hpp"
#include "fuse/kernel_flags.hpp"
#include "fuse/session_io.hpp"
#include "fuse/setid_bits.hpp"

namespace portalfs::fuse {

using common::Errno;
using policy::Op;

namespace {

bool writes(int flags) { return (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC); }

// Flags the daemon may pass on when it re-opens a file for a caller: O_CREAT/O_EXCL are
// handled by create(), O_NOCTTY means nothing here, and O_NOFOLLOW is implied (the fd
// names the inode itself).
// O_DIRECT stays the kernel's: it already sends a caller's O_DIRECT reads and writes to the
// daemon as they come, past its page cache (fs/fuse/file.c, fuse_direct_IO), but their bytes
// then sit at whatever offset the daemon's request buffer gives them, and their offsets and
// sizes need not be aligned at all (FUSE asks for no alignment). An O_DIRECT fd of the
// daemon's would fail them with EINVAL; a plain one does them through the backing file's cache.
int reopen_flags(int flags) {
  return (flags & ~(O_CREAT | O_EXCL | O_NOCTTY | O_NOFOLLOW | O_DIRECT)) | O_CLOEXEC;
}

// A one-buffer vector that reads or writes `fd` at `pos` (FUSE_BUFVEC_INIT without its
// old-style cast).
fuse_bufvec fd_bufvec(size_t size, int fd, off_t pos) {
  fuse_bufvec v{};
  v.count = 1;
  v.buf[0].size = size;
  v.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
  v.buf[0].fd = fd;
  v.buf[0].pos = pos;
  return v;
}

// Before an app may write the file open at `fd`: set-id bits the host left on disk go
// (without_setid, attr.hpp), and `fh` learns whether the file shows set-id bits of its record
// (setid_bits.hpp). An O_TRUNC the kernel flags clears those. 0 or an errno.
int prepare_write(int fd, FileHandle& fh) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return errno;
  const auto kept = setid_bits::read(fd, st);
  if (kept && (*kept & setid_bits::kSetid)) {
    if (!SessionIo::request_kills_setid()) fh.shows_setid = true;
    else if (int err = setid_bits::settle(fd, 0, true)) return err;
  }
  const auto mode = without_setid(st);
  return !mode || ::fchmod(fd, *mode) == 0 ? 0 : errno;
}

// An open handle of a view revoked with --force fails from then on.
bool dead(const FileHandle* fh) { return fh->killed && fh->killed->load(std::memory_order_relaxed); }

// Flags that leave a file struct fit to be a backing file: the kernel does a passthrough
// I/O with the backing file's own flags (plus the caller's per-call ones), so O_APPEND,
// O_SYNC... on it would apply to every open of the inode. O_DIRECT never reaches the
// daemon's file struct (reopen_flags). O_LARGEFILE is the kernel's (kernel_flags.hpp): every
// open of a 64-bit caller carries it, and glibc's is 0; with glibc's alone no open was plain,
// and each passthrough open made a second, read-write open of its backing file (on GlusterFS
// an OPEN, FLUSH and RELEASE more per open, and no open-behind for read-only opens).
const int kPlainFlags = O_ACCMODE | O_CREAT | O_EXCL | O_TRUNC | O_NOCTTY | O_NOFOLLOW |
                        O_CLOEXEC | O_LARGEFILE | kKernelLargefile | O_DIRECT;

// The daemon's own open of a file the caller opens with `flags`. A plain write-only open of a
// file that will pass through is made read-write, so that it can be the backing of the later
// readers too (no second open). The kernel still holds the caller to write-only.
int daemon_flags(int flags, bool passes_through) {
  int out = reopen_flags(flags);
  if (passes_through && (flags & O_ACCMODE) == O_WRONLY && (flags & ~kPlainFlags) == 0) {
    out = (out & ~O_ACCMODE) | O_RDWR;
  }
  return out;
}

}  // namespace

// How the kernel serves an open file.
//  - A file of a data view passes through to its backing file (passthrough.hpp): no request
//    comes here for its reads, writes and mmaps. An open the backing cannot serve (it is
//    read-only and the caller writes, or the reverse) gets direct_io: the daemon serves its
//    reads and writes, the backing its mmaps.
//  - A file of a shared view passes through too, but an open that may write gets direct_io:
//    its writes come to the daemon, which refuses them the moment the grant turns read-only
//    or is revoked with --force, and raises their events in the other views. Reads and mmaps
//    go to the backing file, whose page cache every view of the file shares: coherent across
//    views by construction, at the backing's speed. What it costs: a read-only open made
//    before a revoke --force keeps reading, and a mapping made before keeps its access,
//    until closed or unmapped (as a file opened before a chmod), where the daemon used to
//    fail them with EIO.
//  - Without passthrough (rootless, --no-passthrough, a limited view, GlusterFS):
//    a file another view also shows is served without the page cache (direct_io): a read in
//    one view racing a truncate-and-rewrite in another would otherwise return the zero-filled
//    page of its short read (a torn read no disk gives), and no invalidation can be early
//    enough without deadlocking (filesystem.hpp). The price, for such files only: reads are
//    not cached. Shared mmap works (session_io.hpp asks for FUSE_DIRECT_IO_ALLOW_MMAP): a
//    mapping goes through the view's page cache, its writes reach the daemon at msync or
//    writeback, and every write the daemon sees drops the other views' pages.
//  - Any other file keeps its page cache across opens.
//  - FLUSH (at every close) is asked for only where the daemon wrote through its own fd: a
//    file system may report a write error at close. Read-only and passthrough opens skip it.
// Decided once per open: open() and create() pick the daemon's flags (daemon_flags(), with
// one fallback) and record the access mode the fd got in the FileHandle; this function
// derives the rest from it, and the backing id travels in the op's result to the reply
// (SessionIo patches it in).
PassthroughReply Filesystem::set_io_mode(fuse_file_info* fi, const View& view, FileHandle& fh, pid_t opener) {
  fi->noflush = (fi->flags & O_ACCMODE) == O_RDONLY;
  if (passes_through(view)) {
    fh.counted = true;
    common::UniqueFd fresh;
    // A shared view's writes are the daemon's own (served, below).
    const pid_t writer = (fi->flags & O_ACCMODE) != O_RDONLY && !view.is_shared() ? opener : 0;
    auto b = passthrough_.acquire(fh.inode, writer, [&]() -> Passthrough::Candidate {
      // The daemon's own fd, if it reads (daemon_flags() made a plain write-only open
      // read-write where it could) and carries no per-open flag the backing would impose on
      // every open of the inode.
      if ((fi->flags & ~kPlainFlags) == 0 && fh.readable()) return {fh.fd.get(), fh.accmode};
      // Else a plain read-write open of the same file serves as the backing, so later
      // readers pass through too.
      fresh.reset(::openat(proc_fd_.get(), fd_name(fh.fd.get()).c_str(), O_RDWR | O_CLOEXEC));
      return {fresh ? fresh.get() : -1, O_RDWR};
    });
    if (b.id > 0) {
      const int acc = fi->flags & O_ACCMODE;
      // Writes come to the daemon in a shared view, and to a file that shows set-id bits.
      const bool served = (acc != O_WRONLY && !b.readable) ||
                          (acc != O_RDONLY && (!b.writable || view.is_shared() || fh.shows_setid));
      // Writes the kernel passes through never reach the daemon: a writable open counts as
      // written, so its release is recorded (audit.cpp; data views record no provenance).
      if (acc != O_RDONLY && !served) fh.wrote = true;
      fi->noflush = fi->noflush || !served;
      return {b.id, served};
    }
  }
  const bool shared = InodeTable::has_siblings(fh.inode);
  fi->direct_io = shared;
  fi->keep_cache = !shared;
  return {};
}

// The kernel refuses an open of an inode open with a backing file unless it passes through
// too (fs/fuse/iomode.c, fuse_file_io_open: EINVAL): an echo raising a host write in the view
// of an app that holds the file open in passthrough shares that backing, counted as an open
// (kEchoBacked marks its handle, for its release).
PassthroughReply Filesystem::echo_backing(fuse_ino_t ino, fuse_file_info* fi) {
  const auto* inode = reinterpret_cast<const Inode*>(ino);
  if (!passthrough_.has_backing(inode)) return {};
  auto b = passthrough_.acquire(inode, 0, [] { return Passthrough::Candidate{}; });
  if (b.id <= 0) {  // closed meanwhile: registers nothing new
    passthrough_.release(inode);
    return {};
  }
  fi->fh = kEchoBacked;
  fi->direct_io = 0;
  return {b.id, false};
}

void Filesystem::close_handle(std::unique_ptr<FileHandle> fh) {
  if (fh->counted) passthrough_.release(fh->inode);
  table_.closed(fh->inode);
}

Result<Opened> Filesystem::open(Call& call, fuse_ino_t ino, fuse_file_info* fi) {
  if (call.echo) {  // events.cpp, modified: a handle with no file (fh 0) for fallocate alone
    fi->fh = 0;
    fi->direct_io = 1;
    const PassthroughReply pass = echo_backing(ino, fi);
    return Opened{*fi, pass};
  }
  auto n = resolve_for(ino, writes(fi->flags) ? Op::open_write : Op::open_read);
  if (!n) return n.err();
  if (n->synthetic()) return Errno{EISDIR};
  // The kernel never sends an OPEN for a device inode (nodev refuses it first; device_nodes.hpp):
  // should one come, it gets what nodev answers, never the emulated device's backing file.
  if (device_nodes::is_device(n->inode->type)) return Errno{EACCES};
  if (n->view->spec.audit_reads && (fi->flags & O_ACCMODE) != O_WRONLY) note_read("open-read");
  if (fi->flags & O_TRUNC) {
    if (int err = check_made(*n, Op::truncate)) return Errno{err};
  }
  auto share = open_shares_.take(n->view->spec.app);
  if (!share) return Errno{EMFILE};
  auto fd = fd_of(*n);
  if (!fd) return fd.err();
  const std::string name = fd_name(fd->get());
  int flags = daemon_flags(fi->flags, passes_through(*n->view));
  // O_TRUNC gives a limited view's bytes back (quota_account.hpp); settled once opened.
  std::optional<SizeChange> truncated;
  if (fi->flags & O_TRUNC) truncated.emplace(quotas_, quota_of(*n->view, fd->get()), fd->get()).resize(0);
  int data = ::openat(proc_fd_.get(), name.c_str(), flags);
  if (data < 0 && flags != reopen_flags(fi->flags)) {
    flags = reopen_flags(fi->flags);
    data = ::openat(proc_fd_.get(), name.c_str(), flags);
  }
  truncated.reset();
  if (data < 0) return Errno{errno};
  auto fh = std::make_unique<FileHandle>();
  fh->fd.reset(data);
  if (writes(fi->flags)) {
    if (int err = prepare_write(data, *fh)) return Errno{err};
  }
  fh->accmode = flags & O_ACCMODE;
  fh->inode = n->inode;
  fh->killed = n->view->killed;
  fh->wrote = (fi->flags & O_TRUNC) != 0;
  fh->share = std::move(*share);
  table_.opened(n->inode);
  const PassthroughReply pass = set_io_mode(fi, *n->view, *fh, call.pid);
  fi->fh = files_.add(std::move(fh));
  // O_TRUNC changed the size: the siblings drop their pages (as after setattr).
  if (fi->flags & O_TRUNC) {
    call.data_changed(siblings_of(n->inode), 0, 0);
    note_file(Event::modified, n->inode);
  }
  return Opened{*fi, pass};
}

Result<Created> Filesystem::create(Call& call, fuse_ino_t parent, const char* name, mode_t mode,
                                   fuse_file_info* fi) {
  auto p = resolve_for(parent, Op::create, name);
  if (!p) return p.err();
  const View& view = *p->view;
  auto owner = creator(view, call.uid, call.gid);
  if (!owner) return Errno{EOVERFLOW};
  if (!privileges_.other_owners && !creatable_without_setuid(*owner)) {
    return Errno{refuse_owner(view, *owner, "create")};
  }
  auto share = open_shares_.take(view.spec.app);
  if (!share) return Errno{EMFILE};
  auto pfd = fd_of(*p);
  if (!pfd) return pfd.err();
  InodeCharge charge(inode_shares_, view.id);  // past the app's share nothing is made
  if (charge.refused()) return Errno{ENFILE};
  // A limited view's inode is taken before the file is made, and given back if none was; its
  // step locks are held until a recount is told (quota_account.hpp).
  const QuotaCounters counters = quota_all(view);
  QuotaSteps steps(counters);
  if (int err = take_inode(view)) return Errno{err};
  int data;
  int flags;
  bool made = true;
  const mode_t m = allowed_mode(view, mode & 07777, privileges_.sys_admin);
  {
    FsCredsGuard as_caller(owner->uid, owner->gid);
    // O_NOFOLLOW: a symlink planted under this name (by another view or the host) is not
    // followed out of the view; the caller gets ELOOP.
    // O_EXCL: two views may both have sent CREATE for one name; only one may make it. Views
    // that record provenance always make the file exclusively, to know whether they made it;
    // if it was there (made since the kernel looked: by another view, or the host), a view
    // whose mode protects others' files, or a read view with sidecars, answers EEXIST (it must
    // not open or truncate it as the caller's own), any other opens it as open() would.
    // Read-write if it will pass through (daemon_flags): a new file needs no permission to
    // open; an existing one the caller may only write is opened as asked.
    const bool excl = (fi->flags & O_EXCL) || records(view);
    const int extra = O_CREAT | (excl ? O_EXCL : 0) | O_NOFOLLOW;
    flags = daemon_flags(fi->flags, passes_through(view));
    data = ::openat(pfd->get(), name, flags | extra, setid_bits::made_mode(m));
    if (data < 0 && errno == EACCES && flags != reopen_flags(fi->flags)) {
      flags = reopen_flags(fi->flags);
      data = ::openat(pfd->get(), name, flags | extra, setid_bits::made_mode(m));
    }
    if (data < 0 && errno == EEXIST && !(fi->flags & O_EXCL) &&
        !policy::protects(view.spec.access) && view.spec.sidecars.empty()) {
      made = false;
      data = ::openat(pfd->get(), name, flags | O_NOFOLLOW);
    }
  }
  if (data < 0 || !made) give_inode(view);
  if (data < 0) return Errno{errno};
  auto fh = std::make_unique<FileHandle>();
  fh->fd.reset(data);
  if (!made && writes(fi->flags)) {
    if (int err = prepare_write(data, *fh)) return Errno{err};
  }
  if (made && (m & setid_bits::kSetid)) {  // its set-id bits go to its record
    if (int err = setid_bits::apply(data, m, 0, false)) return Errno{err};
    fh->shows_setid = true;
  }
  fh->accmode = flags & O_ACCMODE;
  fh->made = made;
  fh->wrote = !made && (fi->flags & O_TRUNC);
  fh->share = std::move(*share);
  // The entry's O_PATH fd comes from the open file itself, so it is the same inode even if
  // the name changed in between. Its attributes are taken before the provenance record, which
  // changes only the ctime: after it, on a FUSE storage root (GlusterFS), the kernel dropped
  // the ctime it had and make_entry's statx would be one more GETATTR round trip per create.
  int path_fd = ::openat(proc_fd_.get(), fd_name(data).c_str(), O_PATH | O_CLOEXEC);
  const Result<fuse_entry_param> e = path_fd < 0 ? Errno{errno} : make_entry(view, path_fd, &charge);
  if (made) record_made(view, data);
  if (made) quota_entered(counters, pfd->get(), data, /*made=*/true);
  if (!e) return e.err();
  fh->inode = reinterpret_cast<Inode*>(e->ino);
  fh->killed = view.killed;
  table_.opened(fh->inode);
  const PassthroughReply pass = set_io_mode(fi, view, *fh, call.pid);
  fi->fh = files_.add(std::move(fh));
  if (!made || !note_created(*p, name, S_IFREG, e->ino)) {
    call.entry_changed(siblings_of(p->inode), name);
  }
  return Created{*e, *fi, pass};
}

Result<FileData> Filesystem::read(Call&, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
  FileHandle* fh = file_of(fi);
  if (dead(fh)) return Errno{EIO};
  return FileData{fh->fd.get(), size, off};
}

Result<Written> Filesystem::write_buf(Call& call, fuse_ino_t ino, fuse_bufvec* in, off_t off,
                                      fuse_file_info* fi) {
  // The grant is checked on every write, not only at open: a share turned read-only refuses
  // the writes of files opened before (as ftruncate and fallocate do). A lock-free lookup.
  FileHandle* fh = file_of(fi);
  if (dead(fh)) return Errno{EIO};  // before the view, which is gone (ENOENT)
  auto node = resolve_for(ino, Op::write);
  if (!node) return node.err();
  // A limited view's write is cut where the limit is (quota_account.hpp).
  SizeChange counted(quotas_, quota_of(*node->view, *fh), fh->fd.get());
  const size_t fits = counted.write(static_cast<uint64_t>(off), fuse_buf_size(in));
  if (fits == 0 && fuse_buf_size(in) != 0) return Errno{EDQUOT};
  fuse_bufvec out = fd_bufvec(fits, fh->fd.get(), off);
  ssize_t n = fuse_buf_copy(&out, in, FUSE_BUF_SPLICE_NONBLOCK);
  if (n < 0) return Errno{static_cast<int>(-n)};
  // The first write of a caller without CAP_FSETID clears set-id bits (setid_bits.hpp).
  if (SessionIo::request_kills_setid() && fh->shows_setid.exchange(false, std::memory_order_relaxed)) {
    if (int err = setid_bits::settle(fh->fd.get(), 0, true)) return Errno{err};
  }
  fh->wrote.store(true, std::memory_order_relaxed);
  call.data_changed(siblings_of(fh->inode), off, n);
  note_file(Event::modified, fh->inode);
  return Written{static_cast<size_t>(n)};
}

bool Filesystem::record_writes(fuse_ino_t ino, FileHandle& fh) {
  if (!fh.wrote.exchange(false, std::memory_order_relaxed)) return false;
  const Node n = resolve(ino);
  note_change(n, "write-close");
  // Its maker is recorded as such (record_made); anyone else who wrote is recorded now.
  if (n.view && !fh.made) record_changed(*n.view, fh.fd.get());
  return true;
}

Result<void> Filesystem::flush(Call&, fuse_ino_t ino, fuse_file_info* fi) {
  if (fi->fh == 0 || fi->fh == kEchoBacked) return {};  // an echo's (events.cpp)
  // At close(), before the caller's close returns (a release comes later, in the
  // background): who wrote is on disk once the writer closed.
  if (record_writes(ino, *file_of(fi))) note_file(Event::closed, file_of(fi)->inode);
  // close() of a duplicate reports the errors a network file system would give at close
  // and releases POSIX locks the way close() does; the handle stays open.
  int dup = ::dup(file_of(fi)->fd.get());
  if (dup < 0) return Errno{errno};
  return common::check_syscall(::close(dup));
}

Result<void> Filesystem::fsync(Call&, fuse_ino_t, int datasync, fuse_file_info* fi) {
  int fd = file_of(fi)->fd.get();
  return common::check_syscall(datasync ? ::fdatasync(fd) : ::fsync(fd));
}

Result<void> Filesystem::release(Call&, fuse_ino_t ino, fuse_file_info* fi) {
  if (fi->fh == 0) return {};  // an echo's
  if (fi->fh == kEchoBacked) {
    passthrough_.release(reinterpret_cast<const Inode*>(ino));
    return {};
  }
  auto fh = files_.take(fi->fh);
  // written since the last flush, or never flushed
  if (record_writes(ino, *fh)) note_file(Event::closed, fh->inode);
  close_handle(std::move(fh));
  return {};
}

Result<void> Filesystem::fallocate(Call& call, fuse_ino_t ino, int mode, off_t offset, off_t length,
                                   fuse_file_info* fi) {
  if (call.echo) return {};  // events.cpp, modified
  FileHandle* fh = file_of(fi);
  if (dead(fh)) return Errno{EIO};
  auto n = resolve_for(ino, Op::fallocate);
  if (!n) return n.err();
  SizeChange counted(quotas_, quota_of(*n->view, *fh), fh->fd.get());
  if (int err = counted.allocate(mode & FALLOC_FL_KEEP_SIZE, static_cast<uint64_t>(offset + length))) return Errno{err};
  if (::fallocate(fh->fd.get(), mode, offset, length) != 0) return Errno{errno};
  fh->wrote.store(true, std::memory_order_relaxed);
  call.data_changed(siblings_of(fh->inode), offset, length);
  note_file(Event::modified, fh->inode);
  return {};
}

Result<Offset> Filesystem::lseek(Call&, fuse_ino_t, off_t off, int whence, fuse_file_info* fi) {
  off_t res = ::lseek(file_of(fi)->fd.get(), off, whence);
  if (res < 0) return Errno{errno};
  return Offset{res};
}

Result<Written> Filesystem::copy_file_range(Call& call, fuse_ino_t ino_in, off_t off_in,
                                            fuse_file_info* fi_in, fuse_ino_t ino_out,
                                            off_t off_out, fuse_file_info* fi_out, size_t len,
                                            int flags) {
  FileHandle* in = file_of(fi_in);
  FileHandle* out = file_of(fi_out);
  if (dead(in) || dead(out)) return Errno{EIO};
  auto places = resolve_for(ino_in, ino_out, Op::copy_into);
  if (!places) return places.err();
  // At most this much per request: a whole file at once (cp asks for gigabytes) could outlast
  // the request timeout on a slow disk (session_io.hpp). A short copy is allowed; the caller
  // asks again for the rest.
  constexpr size_t kMaxCopy = size_t{256} << 20;
  // btrfs clones (reflinks) what copy_file_range copies, and a clone from another subvolume into
  // one with a qgroup limit is charged at the next commit without the limit's check (it
  // reserves no data space; seen on 6.18: 16M cloned past an 8M limit). Refused with EXDEV, as
  // a rename between them is: cp then copies by writes, which the limit binds.
  if (common::clone_escapes_qgroup_limit(in->fd.get(), out->fd.get())) return Errno{EXDEV};
  // Into a limited view: cut where the limit is, as a write (quota_account.hpp).
  SizeChange counted(quotas_, quota_of(*places->second.view, *out), out->fd.get());
  const size_t fits = counted.write(static_cast<uint64_t>(off_out), std::min(len, kMaxCopy));
  if (fits == 0 && len != 0) return Errno{EDQUOT};
  ssize_t n = ::copy_file_range(in->fd.get(), &off_in, out->fd.get(), &off_out, fits, static_cast<unsigned>(flags));
  if (n < 0) return Errno{errno};
  out->wrote.store(true, std::memory_order_relaxed);
  call.data_changed(siblings_of(out->inode), off_out - n, n);
  note_file(Event::modified, out->inode);
  return Written{static_cast<size_t>(n)};
}

}  // namespace portalfs::fuse
