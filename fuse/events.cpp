// SPDX-License-Identifier: MIT
// Change events across views: an inotify or fanotify watcher in one view hears of the changes
// made through any other view of the same directory or file, as it would on a local disk.
//
// Why an echo. Two views of one backing file are two FUSE inodes, and the kernel raises an
// fsnotify event only on the inodes a syscall goes through. It gives a FUSE server no call to
// raise one: FUSE_NOTIFY_INVAL_ENTRY and FUSE_NOTIFY_DELETE drop dentries without any fsnotify
// hook (fs/fuse/dir.c, fuse_reverse_inval_entry). So the notifier's thread raises the event the
// one way the kernel knows: it makes the same change, through the watcher's view. The kernel
// sends the requests of that syscall back here; they carry the notifier's thread id (Call::echo)
// and are answered with what is on disk already, without changing anything:
//   created   mknodat/mkdirat/symlinkat in the sibling directory. LOOKUP answers "no such
//             entry", MKNOD/MKDIR/SYMLINK the real entry: IN_CREATE.
//   deleted   unlinkat. The view's kernel mostly has the name cached; where it asks, LOOKUP
//             answers with a stand-in (below). UNLINK/RMDIR answer 0: IN_DELETE (and
//             IN_DELETE_SELF on a watched file).
//   moved     renameat. LOOKUP of the old name answers with the entry at the new name, of the
//             new name "no such entry", RENAME 0: IN_MOVED_FROM and IN_MOVED_TO, one cookie.
//   modified  fallocate(KEEP_SIZE) on an fd opened for writing (OPEN answers a handle with no
//             file behind it, FALLOCATE 0): IN_MODIFY. The fd stays open until...
//   closed    ...the writer closes, and the echo closes it (FLUSH 0): IN_CLOSE_WRITE.
//             A change with no writer's close to wait for (a truncate, a write on the host) is
//             raised with an fd of its own, closed at once (modified_once).
//   attrib    utimensat(now) (SETATTR answers the attributes as they are): IN_ATTRIB.
// Honest with the kernel's caches: each answer is what a lookup or getattr would give now, so
// the dentries and attributes an echo leaves are those the view would see anyway. The one
// exception is the stand-in: a file gone before its echo ran (removed at once, or on the host)
// is answered with an unnamed empty file (O_TMPFILE) in the same directory, so that the view
// hears of its creation and removal as it would on a local disk; the dentry it gets is
// removed by the same echo (or the next). Directories and symlinks get no stand-in: a view
// hears of them while they exist, or while it has them cached.
//
// Queued echoes hold no fd (a burst of changes must not take the daemon's fds), and at most
// Options::events_queue wait. Past that, or when the notifier's own queue or the host watch's
// overflows, changes were lost: the notifier's next work is invalidate_all(), which makes every
// view look up every name and attribute again, so no view stays stale. A watcher in another
// view then misses events: the kernel gives a FUSE server no way to raise IN_Q_OVERFLOW in a
// watcher's queue (the kernel raises it only when that queue itself is full), so it hears
// nothing of the changes lost, and finds them by reading the directory again.
//
// The sibling directories and files are opened by their FUSE node id (open_by_handle_at: a FUSE
// file handle is the node id and the generation, 0 here), which works while the kernel holds
// the inode, and a watch holds it. So a view hears of changes in the directories and files its
// kernel knows: every watched one. A rename between a directory the view knows and one it does
// not is a delete or a create there; an exchange (RENAME_EXCHANGE) raises nothing.
//
// The notifier's thread never holds a lock a worker waits for, and workers never wait for it:
// an echo blocked on a directory lock of its view waits until a worker answers the request that
// holds it, as the invalidations do (notifier.hpp).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "common/log.hpp"
#include "fuse/filesystem_internal.hpp"

namespace portalfs::fuse {

namespace {
// How the kernel encodes a FUSE inode's file handle (fs/fuse/inode.c, fuse_encode_fh).
constexpr int kFuseHandleType = 0x81;  // FILEID_INO64_GEN: node id (two u32, high first), generation

Event::Node node_of(const InodeTable::Sibling& s) {
  return {reinterpret_cast<fuse_ino_t>(s.inode), s.generation};
}

Event::Source source_of(const Inode* inode) { return {inode, inode->view, inode->dev, inode->ino}; }
}  // namespace

// ---- collecting (workers) ----
// Queued by the op itself, before its reply: the kernel sends an app's next request on a file
// only after this one's reply, so the echoes of one app's changes run in the order it made them
// (a write's after its file's create, a close's after the write). Running an echo before the
// reply reaches the app is harmless: the change is on disk, and the echo takes only locks of
// the sibling view's inodes. The sibling views are found when the echo runs: a directory or
// file made a moment ago has its siblings only once its own created echo ran (fresh_).

bool Filesystem::post(Event e) {
  // About 100 bytes each: 64k echoes are a few MB, and minutes of a notifier's work.
  if (queued_.fetch_add(1, std::memory_order_relaxed) >= options_.events_queue) {
    queued_.fetch_sub(1, std::memory_order_relaxed);
    lost_.store(true, std::memory_order_relaxed);
    common::log_once(common::LogLevel::warn, "events:full",
                     "too many changes at once: watchers in other views miss some events, "
                     "and the views drop everything they cached");
    // The echo carried the invalidation of the names it changes in the other views (and a
    // host change's, in every view): without it they could stay stale.
    notifier_.overflowed();
    return false;
  }
  if (notifier_.run_later([this, e = std::move(e)] {
        // Counted until raised: the echo holds the sibling's directory open meanwhile, and
        // `status` (events_queued) must not say 0 while it does (scripts/load drops the
        // kernel's caches once it says 0, and counts what is left as leaked).
        struct Done {
          std::atomic<size_t>& n;
          ~Done() { n.fetch_sub(1, std::memory_order_relaxed); }
        } done{queued_};
        raise(e);
        // Among the events dropped while the queue was full may be a writer's close: its
        // file's echo fd (echo_open_) would stay open, and keep the sibling's file known to the
        // kernel, for good. The last queued echo closes them all (each raises its close-write).
        if (lost_.load(std::memory_order_relaxed) && queued_.load(std::memory_order_relaxed) == 1) {
          lost_.store(false, std::memory_order_relaxed);
          end_echoes();
        }
      })) {
    return true;
  }
  queued_.fetch_sub(1, std::memory_order_relaxed);  // no session: nobody to tell
  return false;
}

bool Filesystem::watched(const Inode* inode) {
  if (InodeTable::has_siblings(inode)) return true;
  if (fresh_n_.load(std::memory_order_relaxed) == 0) return false;  // the common case: no lock
  std::lock_guard lock(echo_mutex_);
  return fresh_.count(inode) != 0;
}

bool Filesystem::note_created(const Node& dir, const char* name, mode_t type, fuse_ino_t made) {
  if (!options_.events || !watched(dir.inode)) return false;
  const auto* inode = reinterpret_cast<const Inode*>(made);
  Event e;
  e.kind = Event::created;
  e.from = source_of(dir.inode);
  e.name = name;
  e.type = type & S_IFMT;
  e.made = source_of(inode);
  std::lock_guard lock(echo_mutex_);
  if (!post(std::move(e))) return false;
  if (fresh_.insert(inode).second) fresh_n_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void Filesystem::note_deleted(const Inode* dir, const char* name, mode_t type) {
  if (!options_.events || !watched(dir)) return;
  Event e;
  e.kind = Event::deleted;
  e.from = source_of(dir);
  e.name = name;
  e.type = type & S_IFMT;
  post(std::move(e));
}

bool Filesystem::note_moved(const Inode* from, const char* name, const Inode* to, int to_fd,
                            const char* to_name) {
  if (!options_.events || (!watched(from) && !watched(to))) return false;
  struct stat st {};
  if (::fstatat(to_fd, to_name, &st, AT_SYMLINK_NOFOLLOW) != 0) return false;  // moved on already
  Event e;
  e.kind = Event::moved;
  e.from = source_of(from);
  e.name = name;
  e.to = source_of(to);
  e.to_name = to_name;
  e.type = st.st_mode & S_IFMT;
  return post(std::move(e));
}

void Filesystem::note_file(Event::Kind kind, const Inode* file) {
  if (!options_.events || !watched(file)) return;
  Event e;
  e.kind = kind;
  e.from = source_of(file);
  if (kind != Event::modified) {
    post(std::move(e));
    return;
  }
  // One queued echo stands for every write until it runs: a burst of writes raises one
  // IN_MODIFY per turn of the notifier, not one per write.
  std::lock_guard lock(echo_mutex_);
  if (modify_queued_.insert(file).second && !post(std::move(e))) modify_queued_.erase(file);
}

// ---- raising (the notifier's thread) ----

void Filesystem::open_echo_mount() {
  if (echo_mount_ || mountpoint_.empty()) return;
  // Not O_PATH: open_by_handle_at takes no O_PATH fd for its mount (fdget refuses it).
  int fd = ::open(mountpoint_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) echo_mount_.reset(fd);
}

int Filesystem::open_node(Event::Node node, int flags) {
  open_echo_mount();
  if (!echo_mount_) return errno = ENOENT, -1;
  alignas(file_handle) unsigned char buf[sizeof(file_handle) + 3 * sizeof(uint32_t)] = {};
  auto* fh = reinterpret_cast<file_handle*>(buf);
  fh->handle_bytes = 3 * sizeof(uint32_t);
  fh->handle_type = kFuseHandleType;
  const uint32_t raw[3] = {static_cast<uint32_t>(static_cast<uint64_t>(node.ino) >> 32),
                           static_cast<uint32_t>(node.ino), node.generation};
  std::memcpy(fh->f_handle, raw, sizeof(raw));
  return ::open_by_handle_at(echo_mount_.get(), fh, flags | O_CLOEXEC);
}

void Filesystem::raise(const Event& e) {
  if (e.kind == Event::modified && e.from.inode) {
    std::lock_guard lock(echo_mutex_);
    modify_queued_.erase(e.from.inode);
  }
  const auto others = [&](const Event::Source& s) { return table_.inodes_of(s.dev, s.ino, s.view); };
  switch (e.kind) {
    case Event::created:
    case Event::deleted: {
      // A view that knows the new entry already found it by itself, before this echo (and a
      // directory can't be made again where the kernel has it: the echo would give the
      // kernel a second dentry for it). It gets the invalidation alone.
      std::vector<ViewId> knew;
      if (e.kind == Event::created && e.made.ino) {
        for (const auto& s : table_.inodes_of(e.made.dev, e.made.ino, kNoView)) knew.push_back(s.view);
      }
      for (const auto& s : others(e.from)) {
        Event one = e;
        one.dir = node_of(s);
        if (std::find(knew.begin(), knew.end(), s.view) == knew.end()) raise_in_dir(one);
        else forget_name(one);
      }
      break;
    }
    case Event::moved: {
      // Per view: a rename where it knows both directories, else a create or a delete where
      // it knows one (as on a local disk, where it would hear an unpaired half).
      std::unordered_map<ViewId, std::pair<Event::Node, Event::Node>> views;
      for (const auto& s : others(e.from)) views[s.view].first = node_of(s);
      for (const auto& s : others(e.to)) views[s.view].second = node_of(s);
      for (const auto& [view, dirs] : views) {
        Event one = e;
        one.dir = dirs.first;
        one.to_dir = dirs.second;
        if (!dirs.first.ino) {
          one.kind = Event::created;
          one.dir = dirs.second;
          one.name = e.to_name;
        } else if (!dirs.second.ino) {
          one.kind = Event::deleted;
        }
        raise_in_dir(one);
      }
      break;
    }
    case Event::modified:
    case Event::modified_once:
    case Event::closed:
    case Event::attrib:
      for (const auto& s : others(e.from)) raise_on_file(e.kind, node_of(s));
      break;
  }
  if (e.kind == Event::created) {
    std::lock_guard lock(echo_mutex_);
    if (fresh_.erase(e.made.inode)) fresh_n_.fetch_sub(1, std::memory_order_relaxed);
  }
}

void Filesystem::raise_in_dir(const Event& e) {
  {
    std::lock_guard lock(echo_mutex_);
    echo_ = e;
  }
  // Errors are expected and harmless: the kernel forgot the sibling (ESTALE), the entry is
  // gone again (ENOENT), or the view hides it.
  // Held open, the directory's FUSE inode can't be forgotten and its node id can't name another
  // inode while the invalidations below use it.
  common::UniqueFd dir(open_node(e.dir, O_PATH | O_DIRECTORY));
  fuse_session* se = se_.load();
  const char* name = e.name.c_str();
  if (!dir) {
    // nothing to raise it in: the kernel forgot the directory
  } else if (e.kind == Event::created) {
    // A name the view cached as absent (or as another file) would keep the kernel from asking:
    // drop it first.
    if (se) fuse_lowlevel_notify_inval_entry(se, e.dir.ino, name, e.name.size());
    if (e.type == S_IFDIR) ::mkdirat(dir.get(), name, 0700);
    else if (e.type == S_IFLNK) ::symlinkat(".", dir.get(), name);
    else ::mknodat(dir.get(), name, (e.type ? e.type : S_IFREG) | 0600, 0);
  } else if (e.kind == Event::deleted) {
    ::unlinkat(dir.get(), name, e.type == S_IFDIR ? AT_REMOVEDIR : 0);
    // Where the echo found nothing to answer with (a directory removed on the host), the view
    // must still forget the name.
    if (se) fuse_lowlevel_notify_inval_entry(se, e.dir.ino, name, e.name.size());
  } else {
    common::UniqueFd to(open_node(e.to_dir, O_PATH | O_DIRECTORY));
    if ((!to || ::renameat(dir.get(), name, to.get(), e.to_name.c_str()) != 0) && se) {
      // No event, but the view must not keep the old names.
      fuse_lowlevel_notify_inval_entry(se, e.dir.ino, name, e.name.size());
      if (to) fuse_lowlevel_notify_inval_entry(se, e.to_dir.ino, e.to_name.c_str(), e.to_name.size());
    }
  }
  std::lock_guard lock(echo_mutex_);
  echo_.reset();
}

void Filesystem::forget_name(const Event& e) {
  common::UniqueFd dir(open_node(e.dir, O_PATH | O_DIRECTORY));  // holds the node id (above)
  fuse_session* se = se_.load();
  if (dir && se) fuse_lowlevel_notify_inval_entry(se, e.dir.ino, e.name.c_str(), e.name.size());
}

void Filesystem::raise_on_file(Event::Kind kind, Event::Node file) {
  auto it = echo_open_.find(file.ino);
  if (kind == Event::modified_once) {
    if (it != echo_open_.end()) {  // a writer's fd is open already
      ::fallocate(it->second.get(), FALLOC_FL_KEEP_SIZE, 0, 1);
    } else if (common::UniqueFd fd(open_node(file, O_WRONLY | O_NONBLOCK)); fd) {
      ::fallocate(fd.get(), FALLOC_FL_KEEP_SIZE, 0, 1);
    }
  } else if (kind == Event::modified) {
    if (it == echo_open_.end()) {
      // O_NONBLOCK: a fifo (changed on the host) must not hold the notifier until a reader comes.
      int fd = open_node(file, O_WRONLY | O_NONBLOCK);
      if (fd < 0) return;
      it = echo_open_.emplace(file.ino, common::UniqueFd(fd)).first;
    }
    ::fallocate(it->second.get(), FALLOC_FL_KEEP_SIZE, 0, 1);
  } else if (kind == Event::closed) {
    if (it != echo_open_.end()) echo_open_.erase(it);  // the close raises IN_CLOSE_WRITE
    else common::UniqueFd(open_node(file, O_WRONLY | O_NONBLOCK));
  } else {
    common::UniqueFd fd(open_node(file, O_PATH));
    if (fd) ::utimensat(fd.get(), "", nullptr, AT_EMPTY_PATH);
  }
}

// ---- changes made on the host (HostWatch's thread) ----

std::shared_ptr<const common::UniqueFd> Filesystem::root_on(dev_t dev) {
  std::lock_guard lock(host_roots_mutex_);
  auto it = host_roots_.find(dev);
  return it == host_roots_.end() ? nullptr : it->second.begin()->second;
}

void Filesystem::host_changed(HostChange& c) {
  quota_host_changed(c);  // the limits the daemon accounts count host changes too (quota_hooks.cpp)
  if (c.kind == HostChange::overflow) {
    // Events were lost: nothing the views cached can be trusted. Every name revalidates
    // (FUSE_NOTIFY_INC_EPOCH, Linux 6.16) and every inode's attributes and pages go.
    common::log(common::LogLevel::warn, "host changes overflowed the event queue: the views "
                                        "look everything up again");
    notifier_.overflowed();
    return;
  }
  const auto all_views = [](dev_t dev, ino_t ino) { return Event::Source{nullptr, kNoView, dev, ino}; };
  Event e;
  e.name = c.name;
  e.from = all_views(c.dev, c.ino);
  switch (c.kind) {
    case HostChange::created:
    case HostChange::moved: {
      const int dirfd = c.kind == HostChange::moved ? c.to_dir.get() : c.dir.get();
      const std::string& name = c.kind == HostChange::moved ? c.to_name : c.name;
      struct stat st {};
      if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        st.st_mode = c.is_dir ? S_IFDIR : S_IFREG;  // gone again: a stand-in may tell it
      }
      e.type = st.st_mode & S_IFMT;
      e.kind = c.kind == HostChange::moved ? Event::moved : Event::created;
      e.to = all_views(c.to_dev, c.to_ino);
      e.to_name = c.to_name;
      break;
    }
    case HostChange::deleted: {
      e.kind = Event::deleted;
      e.type = c.is_dir ? S_IFDIR : S_IFREG;
      break;
    }
    case HostChange::modified:
    case HostChange::closed:
    case HostChange::attrib: {
      struct stat st {};
      if (::fstatat(c.dir.get(), c.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return;
      if (c.kind != HostChange::attrib && !S_ISREG(st.st_mode)) return;  // fifos: no content
      e.kind = c.kind == HostChange::modified ? Event::modified_once
               : c.kind == HostChange::closed ? Event::closed
                                              : Event::attrib;
      e.from = all_views(st.st_dev, st.st_ino);
      const off_t off = c.kind == HostChange::attrib ? -1 : 0;
      for (const auto& s : table_.inodes_of(st.st_dev, st.st_ino, kNoView)) {
        // An app's own writes, which pass through to the backing file (the writer's pid tells
        // them from a host process's): its view raised their events itself (the kernel does,
        // for writes through a FUSE file), and is not told again.
        if (c.kind != HostChange::attrib && passthrough_.written_by(s.inode, c.pid)) e.from.view = s.view;
        notifier_.inval_inode({reinterpret_cast<fuse_ino_t>(s.inode), s.generation, st.st_dev, st.st_ino}, off, 0);
      }
      break;
    }
    case HostChange::overflow:
      return;
  }
  // The directories' listings and times changed too.
  for (const auto& [dev, ino] : {std::pair{c.dev, c.ino}, std::pair{c.to_dev, c.to_ino}}) {
    if (!ino || e.kind == Event::modified_once || e.kind == Event::closed || e.kind == Event::attrib) continue;
    for (const auto& s : table_.inodes_of(dev, ino, kNoView)) {
      notifier_.inval_inode({reinterpret_cast<fuse_ino_t>(s.inode), s.generation, dev, ino}, -1, 0);
    }
  }
  post(std::move(e));
}

void Filesystem::invalidate_all() {
  fuse_session* se = se_.load();
  if (!se) return;
  // FUSE_NOTIFY_INC_EPOCH (protocol 7.44, Linux 6.16; not in libfuse 3.14's headers): every
  // dentry cached before it is looked up again. A header alone, written as libfuse writes its
  // notifications; an older kernel answers EINVAL, and the names then expire at their timeouts.
  struct {
    uint32_t len;
    int32_t error;  // for a notification: its code
    uint64_t unique;  // 0: a notification
  } out{16, 8 /* FUSE_NOTIFY_INC_EPOCH */, 0};
  if (::write(fuse_session_fd(se), &out, sizeof(out)) != sizeof(out)) {
    common::log_once(common::LogLevel::warn, "inc_epoch",
                     std::string("the kernel can't drop every cached name at once (") +
                         std::strerror(errno) + "): names expire at their timeouts");
  }
  const auto layout = views_.layout();  // held: a range-for would free it at once
  for (const auto& [path, dir] : layout->dirs) {
    for (const auto& [name, id] : dir->views) {
      for (Inode* inode : table_.inodes_of(id)) {
        fuse_lowlevel_notify_inval_inode(se, reinterpret_cast<fuse_ino_t>(inode), 0, 0);
      }
    }
  }
}

void Filesystem::end_echoes() {
  echo_open_.clear();
  echo_mount_.reset();
}

// ---- answering (workers: requests made by raise()) ----

std::optional<Event> Filesystem::echo_now() {
  std::lock_guard lock(echo_mutex_);
  return echo_;
}

Result<fuse_entry_param> Filesystem::echo_lookup(fuse_ino_t parent, const char* name) {
  const Node p = resolve(parent);
  if (!p.view || p.synthetic()) return Errno{ENOENT};
  auto e = echo_now();
  if (e && e->dir.ino == parent && e->name == name) {
    switch (e->kind) {
      case Event::created:
        return Errno{ENOENT};
      case Event::deleted:
        return stand_in(p, *e);
      case Event::moved: {
        const Node to = resolve(e->to_dir.ino);
        if (!to.view || to.synthetic()) return Errno{ENOENT};
        auto entry = lookup_backed(to, e->to_name.c_str());
        if (entry) entry->entry_timeout = 0;  // it names the entry under its old name
        return entry;
      }
      default:
        break;
    }
  }
  if (e && e->kind == Event::moved && e->to_dir.ino == parent && e->to_name == name) {
    return Errno{ENOENT};
  }
  return lookup_backed(p, name);
}

Result<fuse_entry_param> Filesystem::echo_made(fuse_ino_t parent, const char* name) {
  const Node p = resolve(parent);
  if (!p.view || p.synthetic()) return Errno{ENOENT};
  // The kernel checks that it has the type it asked for.
  auto entry = lookup_backed(p, name);
  if (entry || entry.error() != ENOENT) return entry;
  auto e = echo_now();  // removed again since
  if (!e || e->kind != Event::created || e->dir.ino != parent || e->name != name) return entry;
  return stand_in(p, *e);
}

Result<fuse_entry_param> Filesystem::stand_in(const Node& dir, const Event& e) {
  if (e.type != S_IFREG) return Errno{ENOENT};
  auto pfd = fd_of(dir);
  if (!pfd) return pfd.err();
  int fd = ::openat(pfd->get(), ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
  if (fd < 0) return Errno{ENOENT};
  int path_fd = ::openat(proc_fd_.get(), fd_name(fd).c_str(), O_PATH | O_CLOEXEC);
  ::close(fd);
  if (path_fd < 0) return Errno{ENOENT};
  // Shown as any file nobody in particular made: a view that shows only its own files (create-
  // only) never hears of others' names this way.
  if (!shown(*dir.view, path_fd)) {
    ::close(path_fd);
    return Errno{ENOENT};
  }
  auto entry = make_entry(*dir.view, path_fd);
  if (entry) entry->entry_timeout = entry->attr_timeout = 0;  // the view must look again
  return entry;
}

}  // namespace portalfs::fuse
