// SPDX-License-Identifier: MIT
// Directories: opendir, readdir, readdirplus, releasedir, fsyncdir.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "fuse/attr.hpp"
#include "fuse/filesystem_internal.hpp"

namespace portalfs::fuse {

using common::Errno;
using policy::Op;

void Filesystem::opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  auto n = resolve_for(ino, Op::readdir);
  if (!n) return reply_err(req, n.error());
  std::unique_ptr<DirHandle> h;
  if (n->synthetic()) {
    h = synth_opendir(*static_cast<SynthInode*>(n->inode));
  } else {
    auto fd = fd_of(*n);
    if (!fd) return reply_err(req, fd.error());
    int dfd = ::openat(proc_fd_.get(), fd_name(fd->get()).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return reply_err(req, errno);
    h = std::make_unique<DirHandle>();
    h->inode = n->inode;
    h->dir = ::fdopendir(dfd);
    if (!h->dir) {
      int err = errno;
      ::close(dfd);
      return reply_err(req, err);
    }
    // The kernel keeps the listing and answers the next opendir+readdir itself. It starts
    // over when the directory changes: through this view (it knows), through another view
    // (inval_entry on the parent), or on the host (a new mtime, seen when the attributes
    // are next fetched: at once for a directory with siblings, else after the timeout).
    fi->cache_readdir = 1;
    fi->keep_cache = 1;
  }
  fi->fh = dirs_.add(std::move(h));
  fuse_reply_open(req, fi);
}

void Filesystem::readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                         fuse_file_info* fi, bool plus) {
  DirHandle* h = dir_of(fi);
  std::vector<char> buf(size);
  size_t used = 0;

  if (!h->dir) {  // synthetic: offsets are indexes into the listing taken at opendir
    for (size_t i = static_cast<size_t>(off); i < h->synth.size(); ++i) {
      const DirEntry& d = h->synth[i];
      struct stat st {};
      st.st_ino = d.ino;
      st.st_mode = d.type;
      size_t want;
      if (plus) {
        // Entries of a synthetic dir are not looked up here: ino 0 tells the kernel to fall
        // back to lookup for them.
        fuse_entry_param e{};
        e.attr = st;
        want = fuse_add_direntry_plus(req, buf.data() + used, size - used, d.name.c_str(), &e,
                                      static_cast<off_t>(i + 1));
      } else {
        want = fuse_add_direntry(req, buf.data() + used, size - used, d.name.c_str(), &st,
                                 static_cast<off_t>(i + 1));
      }
      if (want > size - used) break;
      used += want;
    }
    fuse_reply_buf(req, buf.data(), used);
    return;
  }

  auto n = resolve_for(ino, Op::readdir);
  if (!n) return reply_err(req, n.error());
  // Unlocked before replying: once the kernel has the reply, the directory may be closed
  // and released (RELEASEDIR frees the handle, mutex included) while this thread is still
  // here, and unlocking then would write into freed memory.
  std::unique_lock lock(h->mutex);
  if (off != h->offset) {
    ::seekdir(h->dir, off);
    h->entry = nullptr;
    h->offset = off;
  }
  while (true) {
    if (!h->entry) {
      errno = 0;
      h->entry = ::readdir(h->dir);
      if (!h->entry) {
        if (errno && used == 0) {
          const int err = errno;
          lock.unlock();
          return reply_err(req, err);
        }
        break;
      }
    }
    const char* name = h->entry->d_name;
    const off_t next = h->entry->d_off;
    const bool dots = std::strcmp(name, ".") == 0 || std::strcmp(name, "..") == 0;
    size_t want;
    if (plus && !dots) {
      auto e = lookup_backed(*n, name);
      if (!e) {
        // Gone (or refused) since readdir saw it: skip the name instead of failing the listing.
        h->entry = nullptr;
        h->offset = next;
        continue;
      }
      want = fuse_add_direntry_plus(req, buf.data() + used, size - used, name, &e.value(), next);
      if (want > size - used) {
        table_.forget(reinterpret_cast<Inode*>(e->ino), 1);  // not handed out after all
        break;
      }
    } else {
      struct stat st {};
      st.st_ino = h->entry->d_ino;
      st.st_mode = static_cast<mode_t>(DTTOIF(h->entry->d_type));
      if (std::strcmp(name, "..") == 0 && h->inode->ino == n->view->root_ino) {
        // ".." of a view root is the synthetic apps/<app>/<kind> directory: the listing must
        // agree with stat(".."), and not show the backing parent's inode number.
        auto layout = views_.layout();
        auto it = layout->dirs.find(view_parent_path(n->view->spec));
        if (it != layout->dirs.end()) st.st_ino = it->second.ino;
      }
      if (plus) {
        fuse_entry_param e{};
        e.attr = st;
        want = fuse_add_direntry_plus(req, buf.data() + used, size - used, name, &e, next);
      } else {
        want = fuse_add_direntry(req, buf.data() + used, size - used, name, &st, next);
      }
      if (want > size - used) break;
    }
    used += want;
    h->entry = nullptr;
    h->offset = next;
  }
  lock.unlock();
  fuse_reply_buf(req, buf.data(), used);
}

void Filesystem::releasedir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  dirs_.take(fi->fh);
  reply_err(req, 0);
}

void Filesystem::fsyncdir(fuse_req_t req, fuse_ino_t, int datasync, fuse_file_info* fi) {
  DirHandle* h = dir_of(fi);
  if (!h->dir) return reply_err(req, 0);
  int fd = ::dirfd(h->dir);
  int rc = datasync ? ::fdatasync(fd) : ::fsync(fd);
  reply_err(req, rc == 0 ? 0 : errno);
}

}  // namespace portalfs::fuse
