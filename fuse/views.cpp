// SPDX-License-Identifier: MIT
#include "fuse/views.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "common/beneath.hpp"
#include "common/log.hpp"

namespace portalfs::fuse {

namespace {
// Retired views live this long after a swap: far longer than any single op runs.
constexpr auto kGrace = std::chrono::seconds(60);

std::string key_of(const policy::ViewSpec& spec) {
  return spec.app + "/" + policy::to_string(spec.kind) + "/" + spec.dir_name;
}

// Synthetic inode numbers: high, so they never meet a backing st_ino in a listing.
uint64_t synth_ino(const std::string& path) {
  return (uint64_t{1} << 62) | (std::hash<std::string>()(path) & ((uint64_t{1} << 62) - 1));
}

// Opens a view's backing directory: the anchor by path (the admin's), the rest one component
// at a time with no symlink. A real (not O_PATH) fd: open_by_handle_at refuses an O_PATH
// mount fd with EBADF.
common::Result<common::UniqueFd> open_below_anchor(const policy::ViewSpec& spec, const std::string& path,
                                                   std::string* error) {
  const std::string anchor = spec.anchor.empty() ? "/" : spec.anchor;
  std::string_view rest = path;
  if (anchor != "/" && !(rest.starts_with(anchor) && (rest.size() == anchor.size() || rest[anchor.size()] == '/'))) {
    *error = path + ": not below " + anchor;
    return common::Errno{EINVAL};
  }
  rest.remove_prefix(anchor == "/" ? 0 : anchor.size());
  while (rest.starts_with('/')) rest.remove_prefix(1);
  common::UniqueFd anchor_fd(::open(anchor.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!anchor_fd) {
    *error = anchor + ": " + std::strerror(errno);
    return common::Errno{errno};
  }
  const auto components = common::split_components(rest);
  common::WalkFailure failure;
  auto fd = common::open_beneath(anchor_fd.get(), components, O_RDONLY, &failure);
  if (!fd) *error = common::describe_walk_failure(anchor, components, failure);
  return fd;
}

common::Result<common::UniqueFd> open_backing(const policy::ViewSpec& spec, std::string* error) {
  return open_below_anchor(spec, spec.backing, error);
}

// Trash fds by path, shared by the views of one share within one set().
using Trashes = std::map<std::string, std::shared_ptr<const common::UniqueFd>>;

// Gives a served view of a share with a trash its trash fd. The trash must be on the backing
// directory's file system, or a delete could not be one rename: a trash that is not (or can't
// be opened) is logged once, and the view's deletes then delete.
void open_trash(View& view, Trashes& trashes) {
  if (view.spec.trash.empty()) return;
  if (auto it = trashes.find(view.spec.trash); it != trashes.end()) {
    view.trash = it->second;
  } else {
    std::string error;
    auto fd = open_below_anchor(view.spec, view.spec.trash, &error);
    struct stat st {};
    if (fd && ::fstat(fd->get(), &st) == 0 && st.st_dev != view.dev) {
      error = view.spec.trash + ": not on the file system of " + view.spec.backing;
      fd = common::Errno{EXDEV};
    }
    if (fd) view.trash = std::make_shared<const common::UniqueFd>(std::move(*fd));
    trashes[view.spec.trash] = view.trash;
    if (!fd) {
      common::log_once(common::LogLevel::error, "trash:" + view.spec.trash,
                       "share trash not usable, deletes through " + view.spec.backing + " delete for good: " + error +
                           "; portalctl share set SHARE --trash off, then --trash D, makes it again",
                       {view.spec.app, view.spec.dir_name, "unlink", fd.error()});
    }
  }
}

void add_dir(Layout& layout, const std::string& path) {
  if (layout.dirs.count(path)) return;
  SynthDir d;
  d.path = path;
  d.ino = path.empty() ? 1 : synth_ino(path);
  layout.dirs.emplace(path, std::move(d));
  if (path.empty()) return;
  auto slash = path.rfind('/');
  std::string parent = slash == std::string::npos ? "" : path.substr(0, slash);
  std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  add_dir(layout, parent);
  auto& subs = layout.dirs[parent].subdirs;  // sorted: found by halving (apps/ has one per app)
  auto at = std::lower_bound(subs.begin(), subs.end(), name);
  if (at == subs.end() || *at != name) subs.insert(at, std::move(name));
}

// Root fds by backing path, with the store epoch they were opened in.
using Roots = std::map<std::string, std::pair<uint64_t, std::shared_ptr<const common::UniqueFd>>>;

// Gives `view` its root fd (one already open for its backing in the same store epoch, or a new
// one) and the identity of its root. False if it can't be served: then it is listed as
// unservable in `layout` (answering EIO) and `errors` says why.
bool open_root(View& view, Roots& roots, Layout& layout, std::vector<std::string>* errors) {
  auto rit = roots.find(view.spec.backing);
  if (rit != roots.end() && rit->second.first == view.spec.store_epoch) {
    view.root = rit->second.second;
  } else {
    std::string error;
    auto fd = open_backing(view.spec, &error);
    if (!fd) {
      if (errors) errors->push_back("app " + view.spec.app + ": " + policy::to_string(view.spec.kind) + " view " +
                                    view.spec.dir_name + " not served (EIO): " + error);
      std::string parent = view_parent_path(view.spec);
      add_dir(layout, parent);
      auto& unservable = layout.dirs[parent].unservable;
      unservable.insert(std::upper_bound(unservable.begin(), unservable.end(), view.spec.dir_name),
                        view.spec.dir_name);
      return false;
    }
    view.root = std::make_shared<const common::UniqueFd>(std::move(*fd));
    roots[view.spec.backing] = std::pair{view.spec.store_epoch, view.root};
  }
  struct stat st {};
  if (::fstat(view.root->get(), &st) != 0) return false;
  view.dev = st.st_dev;
  view.root_ino = st.st_ino;
  struct statx sx {};
  if (::statx(view.root->get(), "", AT_EMPTY_PATH, STATX_MNT_ID, &sx) == 0 &&
      (sx.stx_mask & STATX_MNT_ID)) {
    view.mnt_id = sx.stx_mnt_id;
  }
  return true;
}

// Root fds by backing path, shared with the versions they replace as long as the store was
// not found again since (store_epoch): a fd of a file system that went away is not reused.
Roots roots_of(const std::vector<std::unique_ptr<View>>& live) {
  Roots roots;
  for (auto& v : live) {
    if (v->root) roots.emplace(v->spec.backing, std::pair{v->spec.store_epoch, v->root});
  }
  return roots;
}

}  // namespace

std::string view_parent_path(const policy::ViewSpec& spec) {
  return "apps/" + spec.app + "/" + policy::to_string(spec.kind);
}

ViewRegistry::ViewRegistry() : slots_(new std::atomic<const View*>[kMaxViews]) {
  for (ViewId i = 0; i < kMaxViews; ++i) slots_[i].store(nullptr, std::memory_order_relaxed);
  auto layout = std::make_shared<Layout>();
  add_dir(*layout, "");
  add_dir(*layout, "apps");
  layout_ = std::move(layout);
}

std::shared_ptr<const Layout> ViewRegistry::layout() const {
  std::lock_guard lock(layout_mutex_);
  return layout_;
}

ViewId ViewRegistry::intern(const policy::ViewSpec& spec) {
  auto [it, inserted] = ids_.try_emplace(key_of(spec), next_id_);
  if (inserted) next_id_++;
  return it->second;
}

ViewRegistry::Built ViewRegistry::build(const policy::ViewSpecs& specs, Change& change,
                                        std::vector<std::string>* errors) {
  Built out;
  out.layout = std::make_shared<Layout>();
  add_dir(*out.layout, "");
  add_dir(*out.layout, "apps");
  Roots roots = roots_of(live_);
  Trashes trashes;
  for (const auto& spec : specs) {
    if (next_id_ >= kMaxViews && !ids_.count(key_of(spec))) {
      if (errors) errors->push_back("too many views: " + key_of(spec) + " left out");
      continue;
    }
    const ViewId id = intern(spec);
    const View* old = slots_[id].load(std::memory_order_relaxed);
    if (old && old->root && old->spec == spec) {
      // Unchanged: the same View serves on, and costs nothing here. A change of one app
      // then allocates and opens only what changed, not every view of every app (at 1,000
      // apps that rebuilt ~4,000 views per install, and kept each generation for kGrace).
      out.kept.insert(id);
      out.present.insert(id);
      const std::string parent = view_parent_path(spec);
      add_dir(*out.layout, parent);
      out.layout->dirs[parent].views.emplace(spec.dir_name, id);
      continue;
    }
    auto view = std::make_unique<View>();
    view->id = id;
    view->spec = spec;
    const bool same_store = old && old->spec.backing == spec.backing && old->spec.offline == spec.offline &&
                            old->spec.store_epoch == spec.store_epoch;
    if (old && !same_store) {
      out.flipped.insert(view_parent_path(spec));
      change.restored.push_back(view->id);
    }
    // A view whose store is offline is not opened (its path leads to another file system):
    // listed, every op answers EIO (Filesystem::fd_of, synth_lookup), and files opened on the
    // store that went away fail too.
    if (!spec.offline && !open_root(*view, roots, *out.layout, errors)) continue;
    if (!spec.offline) open_trash(*view, trashes);
    if (old && old->spec.backing == spec.backing && !same_store) old->killed->store(true);
    view->killed = same_store ? old->killed : std::make_shared<std::atomic<bool>>(false);
    if (old && !(old->spec == spec)) change.changed.push_back(view->id);
    out.present.insert(view->id);

    std::string parent = view_parent_path(spec);
    add_dir(*out.layout, parent);
    out.layout->dirs[parent].views.emplace(spec.dir_name, view->id);
    out.views.push_back(std::move(view));
  }
  return out;
}

void ViewRegistry::kill(const policy::ViewSpecs& killed, Change& change) {
  for (const auto& k : killed) {
    auto it = ids_.find(key_of(k));
    if (it == ids_.end()) continue;
    if (const View* v = slots_[it->second].load()) v->killed->store(true);
    change.killed.push_back(it->second);
  }
}

void ViewRegistry::publish(Built built, Change& change) {
  auto now = std::chrono::steady_clock::now();
  std::erase_if(retired_, [&](auto& r) { return now - r.first > kGrace; });
  // New views first, then clear the removed ones.
  for (auto& v : built.views) slots_[v->id].store(v.get(), std::memory_order_release);
  std::vector<std::unique_ptr<View>> next = std::move(built.views);
  for (auto& v : live_) {
    if (built.kept.count(v->id)) {
      next.push_back(std::move(v));
      continue;
    }
    if (!built.present.count(v->id)) {
      slots_[v->id].store(nullptr, std::memory_order_release);
      change.removed.push_back(v->id);
    }
    retired_.emplace_back(now, std::move(v));
  }
  live_ = std::move(next);
  change.dirs = changed_dirs(*layout_, *built.layout, built.flipped);
  std::lock_guard lock(layout_mutex_);
  layout_ = std::move(built.layout);
}

std::vector<std::string> ViewRegistry::changed_dirs(const Layout& before, const Layout& after,
                                                    const std::set<std::string>& flipped) {
  std::vector<std::string> dirs;
  // Synthetic dirs whose listing differs.
  for (const auto& [path, dir] : after.dirs) {
    auto it = before.dirs.find(path);
    if (it == before.dirs.end() || it->second.views != dir.views || it->second.subdirs != dir.subdirs ||
        it->second.unservable != dir.unservable) {
      dirs.push_back(path);
    }
  }
  for (const auto& [path, dir] : before.dirs) {
    if (!after.dirs.count(path)) dirs.push_back(path);
  }
  // Same listing, but a view's root went offline or came back: its name in the parent must be
  // looked up again (the kernel cached an entry that now answers EIO, or the reverse).
  for (const auto& path : flipped) {
    if (std::find(dirs.begin(), dirs.end(), path) == dirs.end()) dirs.push_back(path);
  }
  return dirs;
}

ViewRegistry::Change ViewRegistry::set(const policy::ViewSpecs& specs, const policy::ViewSpecs& killed,
                                       std::vector<std::string>* errors) {
  // Held across the opens of roots and trashes (syscalls): only set() takes it, ops never do.
  std::lock_guard lock(set_mutex_);
  Change change;
  Built built = build(specs, change, errors);
  kill(killed, change);
  publish(std::move(built), change);
  return change;
}

}  // namespace portalfs::fuse
