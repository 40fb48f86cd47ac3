// SPDX-License-Identifier: MIT
#pragma once

// The views the filesystem serves, and the synthetic directories above them
// (/, apps/, apps/<app>/, apps/<app>/<kind>/).
//
// Every op looks its inode's view up by ViewId once, without a lock: slots_ holds one atomic
// pointer per view id. A grant change builds new View objects and swaps the pointers; an old
// View stays allocated (retired) for a grace period, so an op that loaded it just before the
// swap finishes with a consistent snapshot of one view. Its root fd is shared between the
// versions of the same backing directory, so a change of access costs no fd.

#include <sys/types.h>

#include <array>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "common/unique_fd.hpp"
#include "fuse/inode_table.hpp"
#include "policy/view_spec.hpp"

namespace portalfs::fuse {

struct View {
  ViewId id = kNoView;
  policy::ViewSpec spec;
  /// O_RDONLY|O_DIRECTORY fd of the backing dir; null while spec.offline (its store is not
  /// the file system it must be: every op answers EIO, with no syscall to find out).
  std::shared_ptr<const common::UniqueFd> root;
  dev_t dev = 0;
  ino_t root_ino = 0;
  uint64_t mnt_id = 0;  // the mount the backing dir is on (statx STATX_MNT_ID)
  /// O_RDONLY|O_DIRECTORY fd of the share's trash directory (spec.trash), on the backing dir's
  /// file system; null when the view has no trash, or it could not be opened there (then
  /// deletes delete, and the log said why once).
  std::shared_ptr<const common::UniqueFd> trash;
  /// Set by a forced revoke: open handles of this view fail with EIO from then on.
  std::shared_ptr<std::atomic<bool>> killed;
  [[nodiscard]] bool is_shared() const { return spec.kind != policy::GrantKind::data; }
};

/// Synthetic directory listing: name -> child (a synthetic dir, or a view root).
struct SynthDir {
  std::string path;  // "", "apps", "apps/<app>", "apps/<app>/<kind>"
  uint64_t ino = 0;  // the st_ino shown for it
  std::map<std::string, ViewId> views;       // only in apps/<app>/<kind>
  /// Views that could not be served (their backing directory can't be reached without a
  /// symlink, or is gone): listed, and answer EIO, so the app sees an error, not an absence.
  std::vector<std::string> unservable;       // sorted
  std::vector<std::string> subdirs;          // sorted names of synthetic children
};

/// The dirs of a layout by path, in shards by app: the dirs of apps/<app> and below are in one
/// shard (shard_of), "" and "apps" in shard 0. Shards are immutable and shared between layouts:
/// a change copies the array of shard pointers and the shards of the apps it touches, not a map
/// of every dir (copying that map at each change grew with the apps served: 8 % of the
/// daemon's time during installs at 1,500 apps). Iterates every dir, shard by shard (paths are
/// in order within a shard, not across).
class LayoutDirs {
 public:
  static constexpr std::size_t kShards = 256;
  using Shard = std::map<std::string, std::shared_ptr<const SynthDir>>;

  LayoutDirs();
  /// The shard that holds `path`.
  static std::size_t shard_of(std::string_view path);
  /// The dir at `path`, or nullptr.
  [[nodiscard]] const SynthDir* find(const std::string& path) const;

  std::array<std::shared_ptr<const Shard>, kShards> shards;

  class const_iterator {
   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = Shard::value_type;
    using difference_type = std::ptrdiff_t;
    using pointer = const value_type*;
    using reference = const value_type&;
    const_iterator() = default;
    reference operator*() const { return *it_; }
    pointer operator->() const { return &*it_; }
    const_iterator& operator++() {
      ++it_;
      skip_empty();
      return *this;
    }
    const_iterator operator++(int) {
      auto was = *this;
      ++*this;
      return was;
    }
    friend bool operator==(const const_iterator& a, const const_iterator& b) {
      return a.shard_ == b.shard_ && (a.shard_ == kShards || a.it_ == b.it_);
    }

   private:
    friend class LayoutDirs;
    const_iterator(const LayoutDirs* dirs, std::size_t shard);
    void skip_empty();
    const LayoutDirs* dirs_ = nullptr;
    std::size_t shard_ = kShards;
    Shard::const_iterator it_{};
  };
  [[nodiscard]] const_iterator begin() const { return {this, 0}; }
  [[nodiscard]] const_iterator end() const { return {this, kShards}; }
};

/// An immutable description of the synthetic tree, swapped as a whole. A change copies only
/// the shards it touches (LayoutDirs): the dirs it does not touch are shared with the layout
/// before, and a change of one app rebuilds only that app's dirs (and apps/ when an app comes
/// or goes).
struct Layout {
  LayoutDirs dirs;
  /// The dir at `path`, or nullptr.
  [[nodiscard]] const SynthDir* find(const std::string& path) const { return dirs.find(path); }
};

class ViewRegistry {
 public:
  static constexpr ViewId kMaxViews = 1u << 16;

  ViewRegistry();

  /// The current view with that id, or nullptr (revoked). Lock-free.
  [[nodiscard]] const View* get(ViewId id) const {
    return id < kMaxViews ? slots_[id].load(std::memory_order_acquire) : nullptr;
  }

  /// The current synthetic tree.
  [[nodiscard]] std::shared_ptr<const Layout> layout() const;

  struct Change {
    std::vector<ViewId> removed;      // views gone (revoked or app removed)
    std::vector<ViewId> changed;      // same id, new access or ids
    std::vector<std::string> dirs;    // synthetic dirs whose listing changed
    std::vector<ViewId> killed;       // force-revoked
    std::vector<ViewId> restored;     // their store went offline, came back or was mounted again
    std::vector<ViewId> added;        // new View objects published (new or changed views)
    bool quotas = false;              // a view added, replaced or removed has a daemon quota
  };

  /// Replaces the set of views. Opens each backing dir from its anchor one component at a
  /// time, never through a symlink (common/beneath.hpp); a view whose backing dir can't be
  /// reached that way is not served (listed as unservable) and reported in `errors`, one line
  /// naming app, directory and the component at fault. `killed` views' open handles start
  /// failing.
  /// Locking: its own mutex (set_mutex_) is held across the opens of roots and trashes, so
  /// that two set()s can't interleave; no op takes it. Ops wait only for layout_mutex_, taken
  /// after it to publish the new layout, and innermost: never held across a syscall.
  Change set(const policy::ViewSpecs& specs, const policy::ViewSpecs& killed,
             std::vector<std::string>* errors);

  /// Replaces the views of `apps` only: `specs` are all their views now (an app of `apps`
  /// without a spec has none any more); every other app's views, and their synthetic dirs,
  /// stay as they are, untouched. The work is in proportion to those apps' views, not to
  /// every view served. A spec of an app not in `apps` is an error (logged in `errors`, left
  /// out). set() is update() of every app served and every app in `specs`.
  Change update(const std::set<std::string>& apps, const policy::ViewSpecs& specs,
                const policy::ViewSpecs& killed, std::vector<std::string>* errors);

 private:
  // The views of one update(), opened and not published yet.
  struct Built {
    std::vector<std::unique_ptr<View>> views;  // new or changed
    std::set<ViewId> kept;     // unchanged: their View serves on
    std::set<ViewId> present;  // both
    std::set<std::string> flipped;  // synthetic dirs holding a view whose store went or came back
    std::set<std::string> touched;  // synthetic dirs rebuilt (the apps' own, and apps/)
    std::shared_ptr<Layout> layout;
  };

  ViewId intern(const policy::ViewSpec& spec);
  Change update_locked(const std::set<std::string>& apps, const policy::ViewSpecs& specs,
                       const policy::ViewSpecs& killed, std::vector<std::string>* errors);
  // The steps of update(), with set_mutex_ held.
  Built build(const std::set<std::string>& apps, const policy::ViewSpecs& specs, Change& change,
              std::vector<std::string>* errors);
  void kill(const policy::ViewSpecs& killed, Change& change);
  void publish(const std::set<std::string>& apps, Built built, Change& change);
  static std::vector<std::string> changed_dirs(const Layout& before, const Layout& after,
                                               const std::set<std::string>& touched,
                                               const std::set<std::string>& flipped);

  std::unique_ptr<std::atomic<const View*>[]> slots_;
  // Lock order: set_mutex_, then layout_mutex_. set_mutex_ serialises update() and is held
  // across its syscalls (opening roots and trashes); no op takes it. layout_mutex_ is taken by
  // ops (layout()) and never held across a syscall.
  std::mutex set_mutex_;  // guards ids_, next_id_, live_, by_app_, by_backing_, retired_; writers of layout_ hold it
  std::map<std::string, ViewId> ids_;  // "app/kind/dir_name" -> id, never reused for another
  ViewId next_id_ = 1;
  std::map<ViewId, std::unique_ptr<View>> live_;
  std::map<std::string, std::set<ViewId>> by_app_;      // live views of each app
  std::map<std::string, std::set<ViewId>> by_backing_;  // live views of each backing dir (their root fds are shared)
  std::vector<std::pair<std::chrono::steady_clock::time_point, std::unique_ptr<View>>> retired_;
  mutable std::mutex layout_mutex_;  // guards layout_ (set() reads it under set_mutex_ alone)
  std::shared_ptr<const Layout> layout_;
};

/// "apps/<app>/<kind>" for a view.
std::string view_parent_path(const policy::ViewSpec& spec);

}  // namespace portalfs::fuse
