// SPDX-License-Identifier: MIT
// Directories: readdir, readdirplus, fsyncdir.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <vector>

#include "common/log.hpp"
#include "fuse/attr.hpp"
#include "fuse/filesystem_internal.hpp"

namespace portalfs::fuse {

using common::Errno;
using policy::Op;

// Directories have no handles. The first OPENDIR is answered ENOSYS (FUSE_CAP_NO_OPENDIR_SUPPORT),
// and the kernel then opens directories itself, with no request, and caches their listings
// (FOPEN_CACHE_DIR and FOPEN_KEEP_CACHE are its defaults without opendir). A listing is read from the daemon once
// and again only after the directory changed: through this view (the kernel knows), through
// another view (inval_entry on the parent), on the host (a new mtime, seen when the
// attributes are next fetched), or a grant changed (set_views drops the pages); in a view that
// audits reads, after every listing (forget_listing: each one is recorded). Each READDIR
// request opens the directory, seeks to the kernel's offset (a d_off cookie of the backing
// file system, valid in any open of the directory) and closes it again.

namespace {

// A directory stream closed on scope exit.
struct Stream {
  DIR* dir = nullptr;
  ~Stream() {
    if (dir) ::closedir(dir);
  }
};

}  // namespace

// A READDIR reply of at most `size` bytes, filled an entry at a time until the next one does
// not fit. fuse_add_direntry*() take a request only to ignore it (libfuse 3.14): the listing
// is built without one, so an op needs no mount.
class DirListing {
 public:
  explicit DirListing(size_t size) : buf_(size) {}
  /// False (and nothing added) when the entry does not fit.
  bool add(const char* name, const struct stat& st, off_t next) {
    return fits(fuse_add_direntry(nullptr, at(), room(), name, &st, next));
  }
  bool add_plus(const char* name, const fuse_entry_param& e, off_t next) {
    return fits(fuse_add_direntry_plus(nullptr, at(), room(), name, &e, next));
  }
  /// An entry not looked up here: in a readdirplus, ino 0 tells the kernel to fall back to
  /// lookup for it.
  bool add_unlooked(bool plus, const char* name, const struct stat& st, off_t next) {
    if (!plus) return add(name, st, next);
    fuse_entry_param e{};
    e.attr = st;
    return add_plus(name, e, next);
  }
  [[nodiscard]] bool empty() const { return used_ == 0; }
  Bytes take() && {
    buf_.resize(used_);
    return Bytes{std::move(buf_)};
  }

 private:
  char* at() { return buf_.data() + used_; }
  [[nodiscard]] size_t room() const { return buf_.size() - used_; }
  bool fits(size_t want) {
    if (want > room()) return false;
    used_ += want;
    return true;
  }
  std::vector<char> buf_;
  size_t used_ = 0;
};

Result<Opened> Filesystem::opendir(Call&, fuse_ino_t, fuse_file_info* fi) {
  if (no_opendir_) return Errno{ENOSYS};
  // A kernel without FUSE_CAP_NO_OPENDIR_SUPPORT (before 5.1): the same, one request later.
  fi->fh = 0;
  fi->cache_readdir = 1;
  fi->keep_cache = 1;
  return Opened{*fi, {}};
}

std::vector<DirEntry> Filesystem::synth_listing(const SynthInode& dir) {
  std::vector<DirEntry> out;
  auto layout = views_.layout();
  const SynthDir* d = layout->find(dir.path);
  out.push_back({".", synth_stat(dir).st_ino, S_IFDIR});
  out.push_back({"..", 1, S_IFDIR});
  if (!d) return out;
  for (const auto& name : d->subdirs) {
    std::string child = dir.path.empty() ? name : dir.path + "/" + name;
    const SynthDir* c = layout->find(child);
    out.push_back({name, c ? c->ino : 1, S_IFDIR});
  }
  for (const auto& [name, id] : d->views) {
    const View* view = views_.get(id);
    if (view) out.push_back({name, view->root ? view->root_ino : 1, S_IFDIR});  // offline: no root
  }
  for (const auto& name : d->unservable) out.push_back({name, 1, S_IFDIR});
  return out;
}

Result<Bytes> Filesystem::readdir(Call&, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*,
                                  bool plus) {
  auto n = resolve_for(ino, Op::readdir);
  if (!n) return n.err();
  if (n->synthetic()) return synth_readdir(*static_cast<SynthInode*>(n->inode), size, off, plus);
  return backed_readdir(*n, size, off, plus);
}

Bytes Filesystem::synth_readdir(const SynthInode& dir, size_t size, off_t off, bool plus) {
  // Offsets are indexes into the listing; its entries are not looked up here.
  const auto listing = synth_listing(dir);
  DirListing out(size);
  for (size_t i = static_cast<size_t>(off); i < listing.size(); ++i) {
    const DirEntry& d = listing[i];
    struct stat st {};
    st.st_ino = d.ino;
    st.st_mode = d.type;
    if (!out.add_unlooked(plus, d.name.c_str(), st, static_cast<off_t>(i + 1))) break;
  }
  return std::move(out).take();
}

Result<Bytes> Filesystem::backed_readdir(const Node& n, size_t size, off_t off, bool plus) {
  // A view that audits reads records each listing, at its start (a rewind starts another).
  const bool audit_reads = n.view->spec.audit_reads && audited();
  if (audit_reads && off == 0) note_read("readdir");
  auto fd = fd_of(n);
  if (!fd) return fd.err();
  int dfd = ::openat(proc_fd_.get(), fd_name(fd->get()).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return Errno{errno};
  Stream s;
  s.dir = ::fdopendir(dfd);
  if (!s.dir) {
    const int err = errno;
    ::close(dfd);
    return Errno{err};
  }
  if (off != 0) ::seekdir(s.dir, off);
  DirListing out(size);
  int err = 0;
  while (true) {
    errno = 0;
    const struct dirent* entry = ::readdir(s.dir);
    if (!entry) {
      err = errno;  // 0 at the end
      break;
    }
    if (!add_backed(n, dfd, *entry, plus, out)) break;
  }
  if (err != 0 && out.empty()) return Errno{err};
  if (audit_reads && out.empty()) forget_listing(n.inode);  // the end: every entry is cached by now
  return std::move(out).take();
}

bool Filesystem::add_backed(const Node& n, int dfd, const struct dirent& entry, bool plus, DirListing& out) {
  const char* name = entry.d_name;
  const off_t next = entry.d_off;
  const bool dots = std::strcmp(name, ".") == 0 || std::strcmp(name, "..") == 0;
  if (plus && !dots) {  // looked up: lookup_backed decides whether it is shown
    auto e = lookup_backed(n, name);
    if (e) {
      if (out.add_plus(name, *e, next)) return true;
      table_.forget(reinterpret_cast<Inode*>(e->ino), 1);  // not handed out after all
      return false;
    }
    // Past the app's inode share (ENFILE) the name is still listed, not looked up (below);
    // otherwise it is gone (or refused) since readdir saw it: skip the name.
    if (e.error() != ENFILE) return true;
  }
  if (!dots && !shown(*n.view, dfd, name)) return true;
  struct stat st {};
  st.st_ino = entry.d_ino;
  st.st_mode = static_cast<mode_t>(DTTOIF(entry.d_type));
  if (std::strcmp(name, "..") == 0 && n.inode->ino == n.view->root_ino) {
    // ".." of a view root is the synthetic apps/<app>/<kind> directory: the listing must
    // agree with stat(".."), and not show the backing parent's inode number.
    auto layout = views_.layout();
    if (const SynthDir* d = layout->find(view_parent_path(n.view->spec))) st.st_ino = d->ino;
  }
  return out.add_unlooked(plus, name, st, next);
}

void Filesystem::forget_listing(const Inode* dir) {
  // The kernel caches a listing in the directory's pages and serves it again with no request
  // (above), so the next listing would not be recorded. Once the kernel asks past the last
  // entry, every entry it got is in those pages: dropping them before answering makes it ask
  // again next time (it finds the pages gone, and starts afresh at offset 0). The
  // notifier drops them, as a worker must not wait for page locks; this one waits for it a
  // moment, and if that is not enough (the notifier is busy or blocked), answers anyway: the
  // next listing may then be served from the cache, unrecorded.
  constexpr std::chrono::milliseconds kPatience{200};
  const NodeRef ref{reinterpret_cast<fuse_ino_t>(dir), dir->generation, dir->dev, dir->ino};
  if (!notifier_.inval_inode_wait(ref, 0, 0, kPatience)) {
    common::log_once(common::LogLevel::warn, "audit-reads-listing",
                     "a directory listing in a view that audits reads was answered before its cached "
                     "copy was dropped: the next listing of it may go unrecorded");
  }
}

Result<void> Filesystem::fsyncdir(Call&, fuse_ino_t ino, int datasync, fuse_file_info*) {
  auto n = resolve_for(ino, Op::readdir);
  if (!n) return n.err();
  if (n->synthetic()) return {};
  auto fd = fd_of(*n);
  if (!fd) return fd.err();
  common::UniqueFd dir(::openat(proc_fd_.get(), fd_name(fd->get()).c_str(),
                                O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir) return Errno{errno};
  return common::check_syscall(datasync ? ::fdatasync(dir.get()) : ::fsync(dir.get()));
}

}  // namespace portalfs::fuse
