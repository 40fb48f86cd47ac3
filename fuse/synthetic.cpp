// SPDX-License-Identifier: MIT
// The synthetic directories above the views: /, apps/, apps/<app>/, apps/<app>/<kind>/.
// They are read-only (owned by root, Options::top_mode: 0500 or 0550), list what the
// current Layout holds, and lead to the view roots. Their inodes live as long as the filesystem (a handful per app).
#include <fcntl.h>
#include <unistd.h>

#include <cstring>

#include "fuse/attr.hpp"
#include "fuse/filesystem_internal.hpp"

namespace portalfs::fuse {

using common::Errno;

Filesystem::SynthInode* Filesystem::find_synth(const std::string& path) {
  std::lock_guard lock(synth_mutex_);
  auto it = synth_.find(path);
  return it == synth_.end() ? nullptr : it->second.get();
}

Filesystem::SynthInode* Filesystem::synth_inode(const std::string& path) {
  std::lock_guard lock(synth_mutex_);
  auto& slot = synth_[path];
  if (!slot) {
    slot = std::make_unique<SynthInode>();
    slot->view = kNoView;
    slot->type = S_IFDIR;
    slot->path = path;
  }
  return slot.get();
}

struct stat Filesystem::synth_stat(const SynthInode& dir) const {
  struct stat st {};
  auto layout = views_.layout();
  const SynthDir* d = layout->find(dir.path);
  st.st_ino = d ? d->ino : 1;
  st.st_mode = S_IFDIR | options_.top_mode;
  st.st_nlink = 2 + (d ? d->subdirs.size() : 0);
  st.st_uid = ::geteuid();  // root; a rootless daemon's own user (privileges.hpp)
  st.st_gid = options_.top_gid;
  st.st_blksize = 4096;
  return st;
}

Result<fuse_entry_param> Filesystem::synth_lookup(const SynthInode& dir, const char* name) {
  auto layout = views_.layout();
  const SynthDir* found = layout->find(dir.path);
  if (!found) return Errno{ENOENT};  // the app went away
  const SynthDir& d = *found;
  std::string child = dir.path.empty() ? name : dir.path + "/" + name;
  if (std::binary_search(d.subdirs.begin(), d.subdirs.end(), std::string(name))) {
    SynthInode* s = synth_inode(child);
    fuse_entry_param e{};
    e.ino = reinterpret_cast<fuse_ino_t>(s);
    e.attr = synth_stat(*s);
    e.attr_timeout = options_.attr_timeout;
    e.entry_timeout = options_.entry_timeout;
    return e;
  }
  if (std::binary_search(d.unservable.begin(), d.unservable.end(), std::string(name))) {
    return Errno{EIO};  // its backing dir can't be reached safely (logged by set_views)
  }
  auto v = d.views.find(name);
  const View* view = v == d.views.end() ? nullptr : views_.get(v->second);
  if (!view) return negative_entry(nullptr);
  if (!view->root) return Errno{EIO};  // its store is offline (logged by the mount manager)
  int fd = ::openat(view->root->get(), ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Errno{errno};
  return make_entry(*view, fd);
}

}  // namespace portalfs::fuse
