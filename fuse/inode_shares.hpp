// SPDX-License-Identifier: MIT
#pragma once

// Fair shares of the daemon's cached inodes: each app may have at most a set number of inodes
// in the table (inode_table.hpp) at once, counted from its first lookup until the kernel
// forgets it. One app walking a huge tree (find over millions of files) keeps every inode the
// kernel's dentry cache holds; past its share its lookups get ENFILE, for that app alone, and
// it works again once the kernel forgets some (memory pressure, drop_caches).
//
// An inode is charged to the app of its view: the table keys inodes by (view, backing inode),
// so a file seen by two apps (a shared directory) is two inodes, each charged to its own app.
// A view id names the same "app/kind/dir" for the daemon's life (views.hpp), so the app of an
// inode is known from its view id alone. The hot path (a new inode) is one atomic load of the
// view's slot and one fetch_add on the app's counter: no lock.

#include <atomic>
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "fuse/inode_table.hpp"
#include "fuse/views.hpp"

namespace portalfs::fuse {

class InodeShares {
 public:
  /// `per_app` inodes per app, or what `of_app` says for an app it names; 0: no limit.
  explicit InodeShares(size_t per_app, std::map<std::string, size_t> of_app = {})
      : per_app_(per_app), of_app_(std::move(of_app)), by_view_(new std::atomic<App*>[ViewRegistry::kMaxViews]) {
    for (ViewId i = 0; i < ViewRegistry::kMaxViews; ++i) by_view_[i].store(nullptr, std::memory_order_relaxed);
  }

  /// Names the app of `view` (before or just after its first lookup; a lookup of a view not
  /// bound yet is not charged). A view id never changes app, so binding again changes nothing.
  void bind(ViewId view, const std::string& app) {
    if (view >= ViewRegistry::kMaxViews) return;
    std::lock_guard lock(mutex_);
    auto& slot = apps_[app];
    if (!slot) slot = std::make_unique<App>(limit_of(app));
    by_view_[view].store(slot.get(), std::memory_order_release);
  }

  enum class Take { charged, uncharged, refused };
  /// Charges one new inode of `view` to its app: refused (answer ENFILE) when the app has its
  /// whole share; uncharged when the view is not bound or its app has no limit (give nothing back).
  Take take(ViewId view) {
    App* app = view < ViewRegistry::kMaxViews ? by_view_[view].load(std::memory_order_acquire) : nullptr;
    if (!app || app->limit == 0) return Take::uncharged;
    if (app->count.fetch_add(1, std::memory_order_relaxed) >= app->limit) {
      app->count.fetch_sub(1, std::memory_order_relaxed);
      return Take::refused;
    }
    return Take::charged;
  }

  /// Gives back the charge of an inode of `view` that take() charged.
  void give(ViewId view) {
    by_view_[view].load(std::memory_order_acquire)->count.fetch_sub(1, std::memory_order_relaxed);
  }

  [[nodiscard]] size_t per_app() const { return per_app_; }
  /// The inodes `app` may have (0: no limit).
  [[nodiscard]] size_t limit_of(const std::string& app) const {
    auto it = of_app_.find(app);
    return it == of_app_.end() ? per_app_ : it->second;
  }

  /// Each bound app's inodes now (for status).
  std::map<std::string, size_t> counts() {
    std::map<std::string, size_t> out;
    std::lock_guard lock(mutex_);
    for (const auto& [name, app] : apps_) out[name] = app->count.load(std::memory_order_relaxed);
    return out;
  }

 private:
  struct App {
    explicit App(size_t l) : limit(l) {}
    const size_t limit;
    std::atomic<size_t> count{0};
  };
  const size_t per_app_;
  const std::map<std::string, size_t> of_app_;
  std::unique_ptr<std::atomic<App*>[]> by_view_;  // view id -> its app; set once per id
  std::mutex mutex_;  // guards apps_ (bind and counts only)
  std::map<std::string, std::unique_ptr<App>> apps_;  // never erased: apps are few
};

/// One new inode's charge taken before its file is made (create, mkdir...), so that past the
/// app's share nothing is made; handed to the new inode (InodeTable::find_or_insert), or given
/// back when destroyed (the file was not made, or its inode was known already).
class InodeCharge {
 public:
  InodeCharge(InodeShares& shares, ViewId view) : shares_(&shares), view_(view), take_(shares.take(view)) {}
  ~InodeCharge() {
    if (take_ == InodeShares::Take::charged) shares_->give(view_);
  }
  InodeCharge(const InodeCharge&) = delete;
  InodeCharge& operator=(const InodeCharge&) = delete;
  [[nodiscard]] bool refused() const { return take_ == InodeShares::Take::refused; }
  /// Hands the charge over: the caller gives it back from now on.
  InodeShares::Take release() { return std::exchange(take_, InodeShares::Take::uncharged); }

 private:
  InodeShares* shares_;
  ViewId view_;
  InodeShares::Take take_;
};

}  // namespace portalfs::fuse
