// SPDX-License-Identifier: MIT
#include "fuse/filesystem.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <cstring>
#include <set>
#include <stdexcept>

#include "common/log.hpp"
#include "fuse/attr.hpp"
#include "fuse/device_nodes.hpp"
#include "fuse/filesystem_internal.hpp"

namespace portalfs::fuse {

using common::Errno;
using common::Result;

static_assert(sizeof(fuse_ino_t) >= sizeof(void*), "an Inode* must fit in a fuse_ino_t");

namespace {
constexpr unsigned kMaxBackground = 4096;  // background requests in flight (init)

// What the options ask for, without what this process may not do (privileges.hpp).
Options within(Options options, const Privileges& p) {
  if (!p.decode_handles) options.events = false;
  // Without handles every inode pins an fd: an app's inodes cost what its open files do.
  if (!(p.decode_handles && options.backing_handles) && options.open_files_per_app != 0) {
    auto cap = [&](size_t& n) { n = n == 0 ? options.open_files_per_app : std::min(n, options.open_files_per_app); };
    cap(options.inodes_per_app);
    for (auto& [app, n] : options.inodes_of) cap(n);
  }
  if (!p.sys_admin) {
    options.passthrough = false;
    options.provenance = false;
  }
  return options;
}
}  // namespace

Filesystem::Filesystem(Options options)
    : privileges_(Privileges::probe()),
      options_(within(options, privileges_)),
      table_(options_.fd_cache, privileges_.decode_handles && options_.backing_handles, &inode_shares_),
      io_(options_.passthrough, options_.request_timeout, options_.io_uring) {
  proc_fd_.reset(::open("/proc/self/fd", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!proc_fd_) throw std::runtime_error(std::string("cannot open /proc/self/fd: ") + std::strerror(errno));
  root_ = synth_inode("");
}

Filesystem::~Filesystem() = default;

Inode* Filesystem::inode_of(fuse_ino_t ino) {
  if (ino == FUSE_ROOT_ID) return root_;
  return reinterpret_cast<Inode*>(ino);
}

Filesystem::Node Filesystem::resolve(fuse_ino_t ino) {
  Inode* inode = inode_of(ino);
  if (inode->view == kNoView) return Node{inode, nullptr};
  return Node{inode, views_.get(inode->view)};  // nullptr: the view was revoked or removed
}

policy::Target Filesystem::target_of(const Node& node) {
  if (node.synthetic()) return policy::Target::above();
  if (!node.view) return policy::Target::hidden();
  return policy::Target::view(node.view->spec.access);
}

namespace {
// Ops whose inode is the directory of the entry they act on: decide_made() is asked of the
// entry (lookup and the ops that add one are always allowed; unlink and rmdir ask it).
bool acts_on_entry(policy::Op op) {
  using policy::Op;
  return op == Op::lookup || op == Op::create || op == Op::mknod || op == Op::mkdir ||
         op == Op::symlink || op == Op::unlink || op == Op::rmdir;
}
}  // namespace

Result<Filesystem::Node> Filesystem::resolve_for(fuse_ino_t ino, policy::Op op, const char* name) {
  Node node = resolve(ino);
  note_node(node, op, name);
  if (auto d = policy::decide(op, target_of(node)); !d.allowed()) {
    if (d.err != EROFS || !has_sidecars(node)) return Errno{d.err};
    if (int err = check_sidecar(node, op, name)) return Errno{err};
    return node;
  }
  if (!acts_on_entry(op)) {
    if (int err = check_made(node, op)) return Errno{err};
  }
  return node;
}

Result<std::pair<Filesystem::Node, Filesystem::Node>> Filesystem::resolve_for(
    fuse_ino_t from, fuse_ino_t to, policy::Op op, const char* from_name, const char* to_name) {
  Node a = resolve(from);
  Node b = resolve(to);
  const bool same_view = a.inode->view == b.inode->view;
  note_nodes(a, b, op, from_name, to_name);
  if (auto d = policy::decide(op, target_of(a), target_of(b), same_view); !d.allowed()) {
    // A read view with sidecars: renaming its own sidecars (within the view), copying into
    // one it holds open.
    if (d.err != EROFS || !has_sidecars(b)) return Errno{d.err};
    if (op == policy::Op::rename && same_view) {
      if (int err = check_sidecar_rename(a, from_name, b, to_name)) return Errno{err};
      return std::pair{a, b};
    }
    if (op == policy::Op::copy_into && policy::decide(policy::Op::read, target_of(a)).allowed()) {
      if (int err = check_sidecar(b, op, nullptr)) return Errno{err};
      return std::pair{a, b};
    }
    return Errno{d.err};
  }
  // link: the source inode gains a name. rename decides on the entries (rename()), and
  // copy_file_range is I/O on files whose opens were decided.
  if (op == policy::Op::link) {
    if (int err = check_made(a, op)) return Errno{err};
  }
  return std::pair{a, b};
}

Result<FdRef> Filesystem::fd_of(const Node& node) {
  // Every op on a view's files comes here first: a view whose store is offline answers EIO
  // (never an empty directory, never ENOENT as if the app had no data).
  if (!node.view->root) return Errno{EIO};
  return table_.fd(node.inode, node.view->root->get());
}

std::string Filesystem::fd_name(int fd) { return std::to_string(fd); }

fuse_entry_param Filesystem::negative_entry(const View* view) const {
  fuse_entry_param e{};
  e.ino = 0;
  e.entry_timeout = entry_timeout(view);
  return e;
}

namespace {
// struct stat from a statx result (the fields FUSE shows).
struct stat to_stat(const struct statx& sx) {
  struct stat st {};
  st.st_dev = makedev(sx.stx_dev_major, sx.stx_dev_minor);
  st.st_ino = sx.stx_ino;
  st.st_mode = sx.stx_mode;
  st.st_nlink = sx.stx_nlink;
  st.st_uid = sx.stx_uid;
  st.st_gid = sx.stx_gid;
  st.st_rdev = makedev(sx.stx_rdev_major, sx.stx_rdev_minor);
  st.st_size = static_cast<off_t>(sx.stx_size);
  st.st_blksize = static_cast<blksize_t>(sx.stx_blksize);
  st.st_blocks = static_cast<blkcnt_t>(sx.stx_blocks);
  st.st_atim = {sx.stx_atime.tv_sec, sx.stx_atime.tv_nsec};
  st.st_mtim = {sx.stx_mtime.tv_sec, sx.stx_mtime.tv_nsec};
  st.st_ctim = {sx.stx_ctime.tv_sec, sx.stx_ctime.tv_nsec};
  return st;
}
}  // namespace

Result<fuse_entry_param> Filesystem::make_entry(const View& view, int path_fd, InodeCharge* charge) {
  // One statx gives the attributes and the mount id (no second syscall per lookup).
  struct statx sx {};
  if (::statx(path_fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW,
              STATX_BASIC_STATS | STATX_MNT_ID, &sx) != 0) {
    int err = errno;
    ::close(path_fd);
    return Errno{err};
  }
  // An emulated device (device_nodes.hpp) is registered and shown as the device it claims to
  // be: the inode's type is what the kernel is told.
  const struct stat st = device_nodes::as_shown(path_fd, to_stat(sx));
  // A bind mount of the same file system keeps st_dev: only the mount id tells it apart.
  const bool other_mount =
      view.mnt_id != 0 && (sx.stx_mask & STATX_MNT_ID) && sx.stx_mnt_id != view.mnt_id;
  if (st.st_dev != view.dev || other_mount) {
    // Another mount inside the backing tree (a file system, or a bind mount of any
    // directory on the host): handles made for it could not be re-opened through the view's
    // root, and it is not what the grant names.
    ::close(path_fd);
    common::log_once(common::LogLevel::warn, "xdev:" + view.spec.backing,
                     "refusing a mount point inside " + view.spec.backing,
                     {view.spec.app, view.spec.dir_name, "lookup", EXDEV});
    return Errno{EXDEV};
  }
  auto inode = table_.find_or_insert(view.id, st, path_fd, charge);
  if (!inode) return inode.err();
  fuse_entry_param e{};
  e.ino = reinterpret_cast<fuse_ino_t>(*inode);
  e.generation = (*inode)->generation;
  e.attr = present(view, st);
  e.attr_timeout = attr_timeout(view, *inode);
  e.entry_timeout = entry_timeout(&view);
  return e;
}

Result<fuse_entry_param> Filesystem::lookup_backed(const Node& parent, const char* name) {
  if (std::strcmp(name, ".") == 0 || std::strcmp(name, "..") == 0) {
    // The kernel resolves these itself; ".." at a view root would leave the view.
    return Errno{ENOENT};
  }
  auto pfd = fd_of(parent);
  if (!pfd) return pfd.err();
  int fd = ::openat(pfd->get(), name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return Errno{errno};
  if (!shown(*parent.view, fd)) {  // a create-only view hides others' files
    ::close(fd);
    return Errno{ENOENT};
  }
  return make_entry(*parent.view, fd);
}

std::vector<std::string> Filesystem::set_views(const policy::ViewSpecs& views,
                                               const policy::ViewSpecs& killed) {
  std::vector<std::string> errors;
  auto old_layout = views_.layout();
  auto change = views_.set(views, killed, &errors);
  views_changed(change, *old_layout, /*all=*/true);
  return errors;
}

std::vector<std::string> Filesystem::update_views(const std::set<std::string>& apps, const policy::ViewSpecs& views,
                                                  const policy::ViewSpecs& killed) {
  std::vector<std::string> errors;
  auto old_layout = views_.layout();
  auto change = views_.update(apps, views, killed, &errors);
  views_changed(change, *old_layout, /*all=*/false);
  return errors;
}

void Filesystem::views_changed(const ViewRegistry::Change& change, const Layout& old_layout, bool all) {
  // The counters follow the limited views; a change that added, replaced or removed none
  // leaves them as they are (every view walked: only then).
  if (all || change.quotas) update_quotas();
  auto new_layout = views_.layout();
  bind_inode_shares(change.added);
  // Cached fds of a store that went away (or of its previous mount) would keep serving it, and
  // pin it: its inodes re-open by handle through the new root once it is back.
  for (ViewId id : change.restored) table_.drop_fds(id);
  if (fuse_session* se = se_.load()) invalidate_changed(se, change, old_layout, *new_layout);
  // After the invalidations: until they are sent, the kernel serves what it cached.
  watch_hosts(change.added);
  track_host_roots(change);
}

void Filesystem::bind_inode_shares(const std::vector<ViewId>& added) {
  // Just after the views are published: a lookup in a new view meanwhile goes uncharged (and
  // gives nothing back when forgotten); a view id never changes app, so rebinding is harmless,
  // and a view kept as it was is bound already.
  for (ViewId id : added) {
    if (const View* v = views_.get(id)) inode_shares_.bind(id, v->spec.app);
  }
}

void Filesystem::invalidate_changed(fuse_session* se, const ViewRegistry::Change& change,
                                    const Layout& old_layout, const Layout& new_layout) {
  // Names in synthetic dirs that appeared or went away: drop the kernel's (negative) entries.
  for (const auto& path : change.dirs) {
    SynthInode* dir = find_synth(path);
    if (!dir) continue;  // the kernel never saw it
    std::set<std::string> names;
    for (const auto* layout : {&old_layout, &new_layout}) {
      const SynthDir* d = layout->find(path);
      if (!d) continue;
      for (const auto& n : d->subdirs) names.insert(n);
      for (const auto& [n, id] : d->views) names.insert(n);
      for (const auto& n : d->unservable) names.insert(n);
    }
    fuse_ino_t ino = dir == root_ ? FUSE_ROOT_ID : reinterpret_cast<fuse_ino_t>(dir);
    fuse_lowlevel_notify_inval_inode(se, ino, 0, 0);
    for (const auto& n : names) fuse_lowlevel_notify_inval_entry(se, ino, n.c_str(), n.size());
  }
  // Changed views present other owners or access; killed ones must drop cached pages too.
  std::vector<ViewId> stale = change.changed;
  stale.insert(stale.end(), change.killed.begin(), change.killed.end());
  stale.insert(stale.end(), change.removed.begin(), change.removed.end());
  for (ViewId id : stale) {
    for (Inode* inode : table_.inodes_of(id)) {
      fuse_lowlevel_notify_inval_inode(se, reinterpret_cast<fuse_ino_t>(inode), 0, 0);
    }
  }
}

void Filesystem::watch_hosts(const std::vector<ViewId>& added) {
  if (!options_.events || !options_.host_watch) return;
  // The marks stay: only the views new in this change can be on a file system not marked yet.
  // One mark per file system: a view on a file system already seen here costs no syscall
  // (thousands of views on one storage root made two each, at every grant).
  std::set<dev_t> seen;
  for (ViewId id : added) {
    const View* v = views_.get(id);
    if (!v || !v->root || !seen.insert(v->dev).second) continue;
    if (auto err = host_watch_.watch(v->root->get()); !err.empty()) {
      common::log_once(common::LogLevel::warn, "hostwatch:" + v->spec.backing,
                       "changes made on the host in " + v->spec.backing +
                           " reach the views at their timeouts only: " + err,
                       {v->spec.app, v->spec.dir_name, "watch", 0});
    }
  }
}

void Filesystem::track_host_roots(const ViewRegistry::Change& change) {
  std::lock_guard lock(host_roots_mutex_);
  auto drop = [&](ViewId id) {
    auto d = host_root_dev_.find(id);
    if (d == host_root_dev_.end()) return;
    auto r = host_roots_.find(d->second);
    r->second.erase(id);
    if (r->second.empty()) host_roots_.erase(r);
    host_root_dev_.erase(d);
  };
  for (const auto* ids : {&change.removed, &change.killed}) {
    for (ViewId id : *ids) drop(id);
  }
  for (const auto* ids : {&change.added, &change.changed, &change.restored}) {
    for (ViewId id : *ids) {
      drop(id);  // a changed view's new object replaces its old one
      const View* v = views_.get(id);
      if (!v || !v->root) continue;  // offline: nothing of it is served
      host_roots_[v->dev][id] = v->root;
      host_root_dev_[id] = v->dev;
    }
  }
}

Filesystem::Stats Filesystem::stats() {
  auto s = table_.stats();
  size_t nviews = 0;
  const auto layout = views_.layout();  // held: a range-for would free it at once
  for (const auto& [path, dir] : layout->dirs) nviews += dir->views.size();
  return Stats{s.inodes, s.cached_fds, s.capacity, nviews, passthrough_.open_backings(),
               queued_.load(std::memory_order_relaxed)};
}

std::map<std::string, Filesystem::AppShare> Filesystem::app_shares() {
  std::map<std::string, AppShare> out;
  for (const auto& [app, n] : open_shares_.counts()) out[app].open_files = n;
  for (const auto& [app, n] : inode_shares_.counts()) out[app].inodes = n;
  for (auto& [app, share] : out) {
    share.open_files_limit = open_shares_.limit_of(app);
    share.inodes_limit = inode_shares_.limit_of(app);
  }
  return out;
}

void Filesystem::init(fuse_conn_info* conn) {
  // Re-open /proc/self/fd here, in the process that serves: portalfsd goes to the background
  // (fork) after the constructor ran, and the parent's /proc/self/fd names a dead process.
  // INIT is the first request, so no op runs concurrently.
  int proc = ::open("/proc/self/fd", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (proc >= 0) proc_fd_.reset(proc);
  quotas_.start();  // the first counts of limited views (quota_account.hpp), in this process too
  // Reads answered from an fd go to the kernel by splice (no copy through our buffers); not
  // over io_uring, whose replies are copied into the ring's buffers (uring.hpp): a splice
  // would go to /dev/fuse, which does not know the request.
  if ((conn->capable & FUSE_CAP_SPLICE_WRITE) && !io_.uring_planned()) {
    conn->want |= FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE;
  }
  // O_TRUNC arrives with open (one request instead of open + setattr).
  if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC) conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
  if (conn->capable & FUSE_CAP_CACHE_SYMLINKS) conn->want |= FUSE_CAP_CACHE_SYMLINKS;
  // Directories are opened by the kernel alone (ops_dir.cpp), unless their listings keep
  // their streams open (Options::dir_streams).
  no_opendir_ = !options_.dir_streams && (conn->capable & FUSE_CAP_NO_OPENDIR_SUPPORT);
  if (no_opendir_) conn->want |= FUSE_CAP_NO_OPENDIR_SUPPORT;
  // No writeback cache: dirty pages of one view would be invisible to the other views of the
  // same file until written back, and every app must see every other app's writes at once.
  conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
  // Reads revalidate expired attributes and drop pages whose file changed size or mtime:
  // with zero attribute timeouts for files with siblings (attr_timeout()), a view sees what
  // another view wrote, and what the host changed on disk within a timeout.
  if (conn->capable & FUSE_CAP_AUTO_INVAL_DATA) conn->want |= FUSE_CAP_AUTO_INVAL_DATA;
  // Locks stay the kernel's (no getlk/setlk/flock ops): flock and POSIX locks work within
  // the mount as on a local file system.
  // A file's RELEASE is a background request, sent after close() has returned. The kernel hands
  // out 12 background requests at a time by default, behind every waiting foreground request,
  // so with many threads opening and closing the RELEASEs fell behind by thousands in seconds
  // (bench/run's scale section): each still holds a daemon fd and a place in its app's share,
  // and the app got EMFILE while holding one file per thread. 4096 lets them flow as they come
  // (a rootless daemon is capped at fs.fuse.max_user_bgreq); congestion at the kernel's 3/4.
  conn->max_background = kMaxBackground;
  conn->congestion_threshold = kMaxBackground / 4 * 3;
}

// ---- coherence ----

Filesystem::Siblings Filesystem::siblings_of(const Inode* inode) {
  Siblings out;
  if (!InodeTable::has_siblings(inode)) return out;  // the common case: no lock taken
  for (const auto& s : table_.siblings(inode)) {
    out.push_back({reinterpret_cast<fuse_ino_t>(s.inode), s.generation, inode->dev, inode->ino});
  }
  return out;
}

void Filesystem::send_after(Call& call) noexcept {
  try {
    for (auto& i : call.after) {
      if (i.name.empty()) notifier_.inval_inode(i.node, i.off, i.len);
      else notifier_.inval_entry(i.node, std::move(i.name));
    }
  } catch (const std::exception& e) {  // out of memory: the siblings see it at their timeout
    common::log(common::LogLevel::error, std::string("invalidation lost: ") + e.what());
  }
  call.after.clear();
}

double Filesystem::entry_timeout(const View* view) const {
  return view && !view->is_shared() ? options_.data_timeout : options_.entry_timeout;
}

double Filesystem::attr_timeout(const View& view, const Inode* inode) const {
  // A file two views show: none (its data's coherence, filesystem.hpp). A directory keeps its
  // timeout: every path walk through it would otherwise ask for its attributes (permissions),
  // and a change another view makes in it drops them and its cached listing at once (an entry
  // invalidation also invalidates its parent).
  if (InodeTable::has_siblings(inode) && !S_ISDIR(inode->type)) return 0.0;
  return view.is_shared() ? options_.attr_timeout : options_.data_timeout;
}

void Filesystem::attach_session(fuse_session* se, std::string mountpoint) {
  se_.store(se);
  mountpoint_ = std::move(mountpoint);
  notifier_.on_overflow([this] { invalidate_all(); }, options_.invalidations_queue);
  notifier_.start(
      se,
      [this](const NodeRef& n) {
        return table_.live(reinterpret_cast<const Inode*>(n.ino), n.generation, n.dev, n.backing);
      },
      [this] { end_echoes(); });
  // Its one fd, opened now (through the mount, once the loop serves), not in the middle of use.
  if (options_.events) notifier_.run_later([this] { open_echo_mount(); });
  if (options_.events && options_.host_watch && !mountpoint_.empty()) {
    host_watch_.start([this](dev_t dev) { return root_on(dev); },
                      [this](HostChange& c) { host_changed(c); });
  }
}

bool Filesystem::detach_session(std::chrono::milliseconds patience) {
  host_watch_.stop();
  se_.store(nullptr);
  return notifier_.stop(patience);
}

}  // namespace portalfs::fuse
