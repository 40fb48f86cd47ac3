// SPDX-License-Identifier: MIT
#pragma once

// Fair shares of the daemon's open files: each app may hold at most a set number of files open
// through the daemon (each costs the daemon an fd), so one app holding thousands open gets
// EMFILE itself while every other app keeps opening, creating and listing.

#include <atomic>
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

namespace portalfs::fuse {

/// One open file counted against its app's share; gives it back when destroyed.
class OpenShare {
 public:
  OpenShare() = default;
  explicit OpenShare(std::shared_ptr<std::atomic<size_t>> count) : count_(std::move(count)) {}
  OpenShare(OpenShare&&) noexcept = default;
  OpenShare& operator=(OpenShare&& other) noexcept {
    release();
    count_ = std::move(other.count_);
    return *this;
  }
  OpenShare(const OpenShare&) = delete;
  OpenShare& operator=(const OpenShare&) = delete;
  ~OpenShare() { release(); }

 private:
  void release() {
    if (count_) count_->fetch_sub(1, std::memory_order_relaxed);
    count_.reset();
  }
  std::shared_ptr<std::atomic<size_t>> count_;
};

class OpenShares {
 public:
  /// `per_app` files open at once per app, or what `of_app` says for an app it names; 0: no
  /// limit.
  explicit OpenShares(size_t per_app, std::map<std::string, size_t> of_app = {})
      : per_app_(per_app), of_app_(std::move(of_app)) {}

  /// A share for one more open file of `app`, or nullopt (answer EMFILE) when it holds its
  /// whole share already.
  [[nodiscard]] std::optional<OpenShare> take(const std::string& app) {
    const size_t limit = limit_of(app);
    if (limit == 0) return OpenShare();
    std::shared_ptr<std::atomic<size_t>> count;
    {
      std::lock_guard lock(mutex_);
      auto& slot = counts_[app];
      if (!slot) slot = std::make_shared<std::atomic<size_t>>(0);
      count = slot;
    }
    if (count->fetch_add(1, std::memory_order_relaxed) >= limit) {
      count->fetch_sub(1, std::memory_order_relaxed);
      return std::nullopt;
    }
    return OpenShare(std::move(count));
  }

  /// Each app's open files now (for status).
  std::map<std::string, size_t> counts() {
    std::map<std::string, size_t> out;
    std::lock_guard lock(mutex_);
    for (const auto& [app, count] : counts_) out[app] = count->load(std::memory_order_relaxed);
    return out;
  }

  [[nodiscard]] size_t per_app() const { return per_app_; }
  /// The files `app` may hold open (0: no limit).
  [[nodiscard]] size_t limit_of(const std::string& app) const {
    auto it = of_app_.find(app);
    return it == of_app_.end() ? per_app_ : it->second;
  }

 private:
  const size_t per_app_;
  const std::map<std::string, size_t> of_app_;
  std::mutex mutex_;
  // One counter per app id ever seen (a few bytes each; apps are few).
  std::map<std::string, std::shared_ptr<std::atomic<size_t>>> counts_;
};

}  // namespace portalfs::fuse
