// SPDX-License-Identifier: MIT
// Directories: readdir, readdirplus, fsyncdir.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <vector>

#include "common/log.hpp"
#include "fuse/attr.hpp"
#include "fuse/filesystem_internal.hpp"

namespace portalfs::fuse {

using common::Errno;
using policy::Op;

// Directories, over a local storage root, have no handles. The first OPENDIR is answered ENOSYS
// (FUSE_CAP_NO_OPENDIR_SUPPORT), and the kernel then opens directories itself, with no request,
// and caches their listings (FOPEN_CACHE_DIR and FOPEN_KEEP_CACHE are its defaults without
// opendir). A listing is read from the daemon once and again only after the directory changed:
// through this view (the kernel knows), through another view (inval_entry on the parent), on
// the host (a new mtime, seen when the attributes are next fetched), or a grant changed
// (set_views drops the pages); in a view that audits reads, after every listing
// (forget_listing: each one is recorded). Each READDIR request opens the directory, seeks to
// the kernel's offset (a d_off cookie of the backing file system, valid in any open of the
// directory) and closes it again.
//
// Over a FUSE storage root (Options::dir_streams, set by fit_to_backing) each open of the
// backing directory is a round trip to the storage (GlusterFS: OPENDIR, RELEASEDIR), and so is
// each getdents. There the kernel sends OPENDIR, and each open of a backed directory gets a
// DirHandle whose stream is opened at the first READDIR and kept until the listing's end (or
// RELEASEDIR), counted against the app's open files (past its share, a listing is read as
// without a handle). A READDIR continues the stream where the last one stopped (the records
// read but not answered are kept with it), reads from the backing directory no more once its
// reply has an entry, and re-positions the stream only when the kernel asks for another offset
// (a seekdir; offset 0, a rewind, reads the directory afresh). A listing of a small directory is then one OPENDIR, two
// getdents (the second finds the end) and one RELEASEDIR on the storage, as on the storage's
// own mount. The kernel serves a listing from its cache only for half the entry timeout after
// the last one read from the backing began (opendir: keep_cache), and drops it at an open after
// that: a cached listing hands out no attributes, so an `ls -l` once the entries' 1 s timeout
// passed looked each one up again, where a READDIRPLUS refreshes them all. Every READDIR still
// resolves the directory for the view's access first, and every entry is filtered as without a
// handle (add_backed).

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
  [[nodiscard]] size_t used() const { return used_; }
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

Result<OpenedDir> Filesystem::opendir(Call&, fuse_ino_t ino, fuse_file_info* fi) {
  if (no_opendir_) return Errno{ENOSYS};
  fi->fh = 0;
  const Node n = options_.dir_streams ? resolve(ino) : Node{nullptr, nullptr};
  if (n.inode && !n.synthetic()) {
    // No access check here: each READDIR resolves the directory for the view's access first.
    auto h = std::make_unique<DirHandle>();
    h->inode = n.inode;
    h->generation = n.inode->generation;
    fi->fh = dirs_.add(std::move(h));
    // The kernel keeps the listing it read last (cache_readdir) and serves it again without a
    // request (keep_cache) only while the entries' attributes that READDIRPLUS handed out are
    // fresh: for half the entry timeout after that listing began. Later, an open drops it
    // and the listing is read again, as on the storage's own mount. A view that audits reads
    // records every listing: never cached.
    const bool audit_reads = !n.view || (n.view->spec.audit_reads && audited());
    fi->cache_readdir = !audit_reads;
    fi->keep_cache = !audit_reads && listed_within(n.inode, entry_timeout(n.view) / 2);
    return OpenedDir{*fi};
  }
  // Synthetic directories, listed from memory; without dir_streams, a kernel without
  // FUSE_CAP_NO_OPENDIR_SUPPORT (before 5.1): cached, as without opendir.
  fi->cache_readdir = 1;
  fi->keep_cache = 1;
  return OpenedDir{*fi};
}

void Filesystem::note_listed(const Inode* dir) {
  constexpr size_t kMost = 4096;  // directories remembered at once
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(listed_mutex_);
  if (listed_.size() >= kMost) {
    // Past every timeout (60 s, a data view's longest) an entry decides nothing.
    std::erase_if(listed_, [&](const auto& e) { return now - e.second.at > std::chrono::seconds(60); });
    if (listed_.size() >= kMost) listed_.clear();  // forgotten: those listings are read again
  }
  listed_[dir] = Listed{dir->generation, now};
}

bool Filesystem::listed_within(const Inode* dir, double seconds) {
  std::lock_guard lock(listed_mutex_);
  auto it = listed_.find(dir);
  return it != listed_.end() && it->second.generation == dir->generation &&
         std::chrono::steady_clock::now() - it->second.at < std::chrono::duration<double>(seconds);
}

Result<void> Filesystem::releasedir(Call&, fuse_ino_t, fuse_file_info* fi) {
  if (fi && fi->fh != 0) dirs_.take(fi->fh);  // closes its stream
  return {};
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

Result<Bytes> Filesystem::readdir(Call&, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi,
                                  bool plus) {
  auto n = resolve_for(ino, Op::readdir);
  if (!n) return n.err();
  if (n->synthetic()) return synth_readdir(*static_cast<SynthInode*>(n->inode), size, off, plus);
  auto* h = fi ? reinterpret_cast<DirHandle*>(fi->fh) : nullptr;
  return backed_readdir(*n, size, off, plus, h);
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

Result<Bytes> Filesystem::backed_readdir(const Node& n, size_t size, off_t off, bool plus, DirHandle* h) {
  // A view that audits reads records each listing, at its start (a rewind starts another).
  const bool audit_reads = n.view->spec.audit_reads && audited();
  if (audit_reads && off == 0) note_read("readdir");
  std::unique_lock<std::mutex> lock;
  DirStream here;  // not kept: this request's alone
  DirStream* s = &here;
  if (h) {
    lock = std::unique_lock(h->mutex);
    // The kernel pairs a handle with its directory; checked all the same.
    if (h->inode != n.inode || h->generation != n.inode->generation) return Errno{EBADF};
    if (h->stream.fd) {
      s = &h->stream;
    } else if (auto share = open_shares_.take(n.view->spec.app)) {
      // A kept stream is one more daemon fd: counted against the app's open files. Past its
      // share the listing is read as without a handle (a fresh open per READDIR).
      s = &h->stream;
      s->share = std::move(*share);
    }
  }
  const bool kept = s != &here;
  const bool fresh = !s->fd;
  if (fresh) {
    auto fd = fd_of(n);
    if (!fd) return fd.err();
    s->fd.reset(::openat(proc_fd_.get(), fd_name(fd->get()).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!s->fd) {
      const int err = errno;
      *s = DirStream{};  // its share given back
      return Errno{err};
    }
    s->buf = std::make_unique_for_overwrite<char[]>(DirStream::kBufSize);
  }
  if (fresh || off != s->at || off == 0) {  // opened, a seek, or a rewind: read from `off`
    s->pos = s->end = 0;
    s->at = -1;  // the stream's position is unknown until the seek succeeds
    // A stream just opened is at 0 already (no seek: one syscall less per local READDIR).
    if ((off != 0 || !fresh) && ::lseek(s->fd.get(), off, SEEK_SET) < 0) return Errno{errno};
    s->at = off;
  }
  if (h && off == 0 && plus) note_listed(n.inode);
  const int dfd = s->fd.get();
  DirListing out(size);
  int err = 0;
  bool end = false;
  while (true) {
    if (s->pos == s->end) {
      // A kept stream reads on only for a reply still empty: the next READDIR reads the rest
      // (for a small directory, that read finds the end).
      if (kept && !out.empty()) break;
      const ssize_t got = ::getdents64(dfd, s->buf.get(), DirStream::kBufSize);
      if (got <= 0) {
        err = got < 0 ? errno : 0;
        end = got == 0;
        break;
      }
      s->pos = 0;
      s->end = static_cast<size_t>(got);
    }
    const auto& entry = *reinterpret_cast<const struct dirent64*>(s->buf.get() + s->pos);
    const size_t before = out.used();
    if (!add_backed(n, dfd, entry, plus, out)) break;  // did not fit: the next reply's first
    s->pos += entry.d_reclen;
    if (out.used() != before) s->at = entry.d_off;  // the kernel asks next from the last one answered
  }
  // A kept stream at its end (its reply is empty: the listing is over) is closed now, not at
  // RELEASEDIR: a seek back opens it again.
  if (kept && end && out.empty()) *s = DirStream{};
  if (err != 0 && out.empty()) return Errno{err};
  // The end: every entry is cached by now (with a handle, a view that audits reads caches none).
  if (audit_reads && out.empty() && !h) forget_listing(n.inode);
  return std::move(out).take();
}

bool Filesystem::add_backed(const Node& n, int dfd, const struct dirent64& entry, bool plus, DirListing& out) {
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
