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

// Copy-on-write edits of a layout: the new layout starts as a copy of the array of shard
// pointers; a shard shared with the layout before is copied once, at its first change, and so is
// a dir; the shards and dirs an edit does not touch stay the very same objects.
class LayoutEdit {
 public:
  explicit LayoutEdit(const Layout& base) : layout_(std::make_shared<Layout>(base)) {}

  [[nodiscard]] bool has(const std::string& path) const { return layout_->find(path) != nullptr; }

  // The dir at `path`, to change: made (with its parents, and its name in its parent) if it
  // is not there.
  SynthDir& dir(const std::string& path) {
    if (has(path)) return mut(path);
    auto d = std::make_shared<SynthDir>();
    d->path = path;
    d->ino = path.empty() ? 1 : synth_ino(path);
    shard(path).emplace(path, d);
    own_.emplace(path, d);
    if (!path.empty()) {
      auto slash = path.rfind('/');
      std::string parent = slash == std::string::npos ? "" : path.substr(0, slash);
      std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
      // Sorted: found by halving (apps/ has one per app). A parent that lists the name already
      // (an app whose dirs are made again) is not copied.
      const SynthDir* listed = layout_->find(parent);
      if (!listed || !std::binary_search(listed->subdirs.begin(), listed->subdirs.end(), name)) {
        auto& subs = dir(parent).subdirs;
        subs.insert(std::lower_bound(subs.begin(), subs.end(), name), std::move(name));
      }
    }
    return *d;
  }

  // Drops apps/<app> and every dir below it (their paths go to `touched`); its name in apps/
  // stays until forget_app(), so that an app whose dirs are made again costs apps/ no copy.
  void drop_app(const std::string& app, std::set<std::string>& touched) {
    const std::string top = "apps/" + app;
    if (!has(top)) return;  // and nothing below it: a dir is made with its parents
    LayoutDirs::Shard& dirs = shard(top);  // all of the app's dirs are in its shard
    dirs.erase(top);
    touched.insert(top);
    own_.erase(top);
    // Below it: from "apps/<app>/" on ("apps/<app>-x" sorts between the two, and is another app's).
    const std::string below = top + "/";
    for (auto it = dirs.lower_bound(below); it != dirs.end() && it->first.starts_with(below);) {
      touched.insert(it->first);
      own_.erase(it->first);
      it = dirs.erase(it);
    }
  }

  // Takes an app without dirs out of apps/.
  void forget_app(const std::string& app) {
    if (has("apps/" + app)) return;
    const SynthDir* apps = layout_->find("apps");
    if (!apps || !std::binary_search(apps->subdirs.begin(), apps->subdirs.end(), app)) return;
    auto& subs = mut("apps").subdirs;
    subs.erase(std::lower_bound(subs.begin(), subs.end(), app));
  }

  // The paths of apps/<app> and below, in the edited layout.
  void paths_of_app(const std::string& app, std::set<std::string>& out) const {
    const std::string top = "apps/" + app;
    if (!has(top)) return;
    out.insert(top);
    const LayoutDirs::Shard& dirs = *layout_->dirs.shards[LayoutDirs::shard_of(top)];
    const std::string below = top + "/";
    for (auto it = dirs.lower_bound(below); it != dirs.end() && it->first.starts_with(below); ++it) out.insert(it->first);
  }

  std::shared_ptr<Layout> done() { return std::move(layout_); }

 private:
  // The shard of `path`, to change: copied at its first change by this edit.
  LayoutDirs::Shard& shard(const std::string& path) {
    const std::size_t i = LayoutDirs::shard_of(path);
    if (!own_shards_[i]) {
      own_shards_[i] = std::make_shared<LayoutDirs::Shard>(*layout_->dirs.shards[i]);
      layout_->dirs.shards[i] = own_shards_[i];
    }
    return *own_shards_[i];
  }

  SynthDir& mut(const std::string& path) {
    if (auto it = own_.find(path); it != own_.end()) return *it->second;
    auto copy = std::make_shared<SynthDir>(*layout_->find(path));
    shard(path)[path] = copy;
    own_.emplace(path, copy);
    return *copy;
  }

  std::shared_ptr<Layout> layout_;
  std::array<std::shared_ptr<LayoutDirs::Shard>, LayoutDirs::kShards> own_shards_;  // copied by this edit
  std::map<std::string, std::shared_ptr<SynthDir>> own_;  // made or copied by this edit: changed in place
};

// Root fds by backing path, with the store epoch they were opened in.
using Roots = std::map<std::string, std::pair<uint64_t, std::shared_ptr<const common::UniqueFd>>>;

// Gives `view` its root fd (one already open for its backing in the same store epoch, or a new
// one) and the identity of its root. False if it can't be served: then it is listed as
// unservable in `layout` (answering EIO) and `errors` says why.
bool open_root(View& view, Roots& roots, LayoutEdit& layout, std::vector<std::string>* errors) {
  auto rit = roots.find(view.spec.backing);
  if (rit != roots.end() && rit->second.first == view.spec.store_epoch) {
    view.root = rit->second.second;
  } else {
    std::string error;
    auto fd = open_backing(view.spec, &error);
    if (!fd) {
      if (errors) errors->push_back("app " + view.spec.app + ": " + policy::to_string(view.spec.kind) + " view " +
                                    view.spec.dir_name + " not served (EIO): " + error);
      auto& unservable = layout.dir(view_parent_path(view.spec)).unservable;
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

}  // namespace

LayoutDirs::LayoutDirs() {
  static const auto kEmpty = std::make_shared<const Shard>();
  shards.fill(kEmpty);
}

std::size_t LayoutDirs::shard_of(std::string_view path) {
  constexpr std::string_view kApps = "apps/";
  if (!path.starts_with(kApps)) return 0;
  const std::string_view app = path.substr(kApps.size(), path.find('/', kApps.size()) - kApps.size());
  return std::hash<std::string_view>{}(app) % kShards;
}

const SynthDir* LayoutDirs::find(const std::string& path) const {
  const Shard& shard = *shards[shard_of(path)];
  auto it = shard.find(path);
  return it == shard.end() ? nullptr : it->second.get();
}

LayoutDirs::const_iterator::const_iterator(const LayoutDirs* dirs, std::size_t shard) : dirs_(dirs), shard_(shard) {
  if (shard_ < kShards) it_ = dirs_->shards[shard_]->begin();
  skip_empty();
}

void LayoutDirs::const_iterator::skip_empty() {
  while (shard_ < kShards && it_ == dirs_->shards[shard_]->end()) {
    if (++shard_ < kShards) it_ = dirs_->shards[shard_]->begin();
  }
}

std::string view_parent_path(const policy::ViewSpec& spec) {
  return "apps/" + spec.app + "/" + policy::to_string(spec.kind);
}

ViewRegistry::ViewRegistry() : slots_(new std::atomic<const View*>[kMaxViews]) {
  for (ViewId i = 0; i < kMaxViews; ++i) slots_[i].store(nullptr, std::memory_order_relaxed);
  LayoutEdit edit{Layout{}};
  edit.dir("apps");
  layout_ = edit.done();
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

ViewRegistry::Built ViewRegistry::build(const std::set<std::string>& apps, const policy::ViewSpecs& specs,
                                        Change& change, std::vector<std::string>* errors) {
  Built out;
  LayoutEdit edit(*layout_);
  for (const auto& app : apps) edit.drop_app(app, out.touched);
  Roots roots;
  Trashes trashes;
  for (const auto& spec : specs) {
    if (!apps.count(spec.app)) {
      if (errors) errors->push_back("view " + key_of(spec) + " left out: its app is not among those changed");
      continue;
    }
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
      edit.dir(view_parent_path(spec)).views.emplace(spec.dir_name, id);
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
    if (!spec.offline && !roots.count(spec.backing)) {
      // A root fd of a live view of the same backing dir (another app's view of a share, or
      // the version this one replaces), as long as the store was not found again since
      // (store_epoch): a fd of a file system that went away is not reused.
      if (auto b = by_backing_.find(spec.backing); b != by_backing_.end()) {
        for (ViewId other : b->second) {
          const View* v = slots_[other].load(std::memory_order_relaxed);
          if (!v || !v->root) continue;
          roots[spec.backing] = std::pair{v->spec.store_epoch, v->root};
          if (v->spec.store_epoch == spec.store_epoch) break;
        }
      }
    }
    // A view whose store is offline is not opened (its path leads to another file system):
    // listed, every op answers EIO (Filesystem::fd_of, synth_lookup), and files opened on the
    // store that went away fail too.
    if (!spec.offline && !open_root(*view, roots, edit, errors)) continue;
    if (!spec.offline) open_trash(*view, trashes);
    if (old && old->spec.backing == spec.backing && !same_store) old->killed->store(true);
    view->killed = same_store ? old->killed : std::make_shared<std::atomic<bool>>(false);
    if (old && !(old->spec == spec)) change.changed.push_back(view->id);
    out.present.insert(view->id);
    edit.dir(view_parent_path(spec)).views.emplace(spec.dir_name, view->id);
    out.views.push_back(std::move(view));
  }
  for (const auto& app : apps) {
    edit.forget_app(app);
    edit.paths_of_app(app, out.touched);
  }
  out.touched.insert("apps");
  out.layout = edit.done();
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

void ViewRegistry::publish(const std::set<std::string>& apps, Built built, Change& change) {
  auto now = std::chrono::steady_clock::now();
  std::erase_if(retired_, [&](auto& r) { return now - r.first > kGrace; });
  // New views first, then clear the removed ones.
  for (auto& v : built.views) slots_[v->id].store(v.get(), std::memory_order_release);
  for (const auto& app : apps) {
    auto owned = by_app_.find(app);
    if (owned == by_app_.end()) continue;
    for (ViewId id : owned->second) {
      if (built.kept.count(id)) continue;
      auto node = live_.extract(id);
      if (node.empty()) continue;
      std::unique_ptr<View> old = std::move(node.mapped());
      if (!built.present.count(id)) {
        slots_[id].store(nullptr, std::memory_order_release);
        change.removed.push_back(id);
      }
      if (!old->spec.quotas.empty()) change.quotas = true;
      if (auto b = by_backing_.find(old->spec.backing); b != by_backing_.end()) {
        b->second.erase(id);
        if (b->second.empty()) by_backing_.erase(b);
      }
      retired_.emplace_back(now, std::move(old));
    }
    by_app_.erase(owned);
  }
  for (auto& v : built.views) {
    if (!v->spec.quotas.empty()) change.quotas = true;
    change.added.push_back(v->id);
    by_backing_[v->spec.backing].insert(v->id);
    const ViewId id = v->id;
    live_[id] = std::move(v);
  }
  for (ViewId id : built.present) by_app_[live_.at(id)->spec.app].insert(id);
  change.dirs = changed_dirs(*layout_, *built.layout, built.touched, built.flipped);
  std::lock_guard lock(layout_mutex_);
  layout_ = std::move(built.layout);
}

std::vector<std::string> ViewRegistry::changed_dirs(const Layout& before, const Layout& after,
                                                    const std::set<std::string>& touched,
                                                    const std::set<std::string>& flipped) {
  std::vector<std::string> dirs;
  // Synthetic dirs whose listing differs: only those the change rebuilt can.
  for (const auto& path : touched) {
    const SynthDir* was = before.find(path);
    const SynthDir* now = after.find(path);
    if (was == now) continue;  // the same object (or absent from both)
    if (!was || !now || was->views != now->views || was->subdirs != now->subdirs || was->unservable != now->unservable) {
      dirs.push_back(path);
    }
  }
  // Same listing, but a view's root went offline or came back: its name in the parent must be
  // looked up again (the kernel cached an entry that now answers EIO, or the reverse).
  for (const auto& path : flipped) {
    if (std::find(dirs.begin(), dirs.end(), path) == dirs.end()) dirs.push_back(path);
  }
  return dirs;
}

ViewRegistry::Change ViewRegistry::update(const std::set<std::string>& apps, const policy::ViewSpecs& specs,
                                          const policy::ViewSpecs& killed, std::vector<std::string>* errors) {
  // Held across the opens of roots and trashes (syscalls): only update() takes it, ops never do.
  std::lock_guard lock(set_mutex_);
  return update_locked(apps, specs, killed, errors);
}

ViewRegistry::Change ViewRegistry::update_locked(const std::set<std::string>& apps, const policy::ViewSpecs& specs,
                                                 const policy::ViewSpecs& killed, std::vector<std::string>* errors) {
  Change change;
  Built built = build(apps, specs, change, errors);
  kill(killed, change);
  publish(apps, std::move(built), change);
  return change;
}

ViewRegistry::Change ViewRegistry::set(const policy::ViewSpecs& specs, const policy::ViewSpecs& killed,
                                       std::vector<std::string>* errors) {
  // Every app served (one with only unservable views has dirs but no live view) and every app
  // in `specs`.
  std::lock_guard lock(set_mutex_);
  std::set<std::string> apps;
  if (const SynthDir* d = layout_->find("apps")) apps.insert(d->subdirs.begin(), d->subdirs.end());
  for (const auto& spec : specs) apps.insert(spec.app);
  return update_locked(apps, specs, killed, errors);
}

}  // namespace portalfs::fuse
