// SPDX-License-Identifier: MIT
#include "fuse/notifier.hpp"

#include <unistd.h>

#include <future>
#include <memory>

#include "common/log.hpp"

namespace portalfs::fuse {

Notifier::~Notifier() { stop_waiting(); }

void Notifier::stop_waiting() {
  // Blocked for good only while nobody aborts the connection; the Session does that first
  // (session.cpp), so this loop ends. Returning instead would destroy a joinable thread
  // (std::terminate), or free what the thread still uses.
  while (!stop()) {
    common::log(common::LogLevel::warn,
                "an invalidation is still blocked in the kernel; waiting for it to stop the notifier");
  }
}

void Notifier::start(fuse_session* se, Live live, std::function<void()> at_exit) {
  stop_waiting();
  std::lock_guard lock(mutex_);
  queue_.clear();
  se_ = se;
  exited_ = false;
  live_ = std::move(live);
  at_exit_ = std::move(at_exit);
  stopping_ = false;
  thread_ = std::thread([this] { run(); });
}

bool Notifier::stop(std::chrono::milliseconds patience) {
  {
    std::unique_lock lock(mutex_);
    if (!thread_.joinable()) return true;
    stopping_ = true;
    queue_.clear();
    flush_pending_ = false;
    wake_.notify_all();
    if (!idle_.wait_for(lock, patience, [this] { return exited_; })) return false;
  }
  thread_.join();
  std::lock_guard lock(mutex_);
  se_ = nullptr;
  return true;
}

void Notifier::on_overflow(std::function<void()> flush, size_t limit) {
  std::lock_guard lock(mutex_);
  flush_ = std::move(flush);
  limit_ = limit;
}

void Notifier::overflowed() {
  std::lock_guard lock(mutex_);
  if (!se_ || stopping_ || !flush_) return;
  flush_pending_ = true;
  wake_.notify_one();
}

bool Notifier::post(Item item) {
  std::lock_guard lock(mutex_);
  if (!se_ || stopping_) return false;
  // Work is bounded by its callers (the echoes by Filesystem's events queue); invalidations
  // are not: past the limit they are dropped, and the flush stands for all of them.
  if (!item.work && limit_ && flush_ && queue_.size() >= limit_) {
    if (!flush_pending_) {
      common::log_once(common::LogLevel::warn, "notifier:full",
                       "too many invalidations at once: the views drop everything they cached");
    }
    flush_pending_ = true;
    wake_.notify_one();
    return false;
  }
  queue_.push_back(std::move(item));
  wake_.notify_one();
  return true;
}

void Notifier::inval_inode(const NodeRef& node, off_t off, off_t len) { post(Item{node, off, len, {}, {}}); }

bool Notifier::inval_inode_wait(const NodeRef& node, off_t off, off_t len, std::chrono::milliseconds patience) {
  auto sent = std::make_shared<std::promise<void>>();
  std::future<void> done = sent->get_future();
  if (!run_later([this, node, off, len, sent] {
        // As run() does for the queued ones: a node forgotten since is left alone.
        if (!live_ || live_(node)) fuse_lowlevel_notify_inval_inode(se_, node.ino, off, len);
        sent->set_value();
      })) {
    return false;
  }
  if (done.wait_for(patience) != std::future_status::ready) return false;
  try {
    done.get();
    return true;
  } catch (const std::future_error&) {  // dropped unsent: stop() clears the queue
    return false;
  }
}

void Notifier::inval_entry(const NodeRef& parent, std::string name) {
  post(Item{parent, 0, 0, std::move(name), {}});
}

bool Notifier::run_later(std::function<void()> work) { return post(Item{{}, 0, 0, {}, std::move(work)}); }

bool Notifier::wait_idle(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  return idle_.wait_for(lock, timeout, [this] { return queue_.empty() && !busy_ && !flush_pending_; });
}

void Notifier::run() {
  tid_.store(::gettid(), std::memory_order_relaxed);
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait(lock, [this] { return stopping_ || flush_pending_ || !queue_.empty(); });
    if (stopping_) break;
    Item item;
    if (flush_pending_) {  // ahead of the queue: the views are stale until it ran
      flush_pending_ = false;
      item.work = flush_;
      flushes_.fetch_add(1, std::memory_order_relaxed);
    } else {
      item = std::move(queue_.front());
      queue_.pop_front();
    }
    busy_ = true;
    fuse_session* se = se_;
    lock.unlock();
    // Errors are expected and harmless: ENOENT for an inode the kernel forgot, ENOTCONN
    // while the mount goes away.
    if (item.work) {
      try {
        item.work();
      } catch (const std::exception& e) {
        common::log(common::LogLevel::error, std::string("notifier: ") + e.what());
      }
    } else if (live_ && !live_(item.node)) {
      // forgotten since: nothing to invalidate, and its node id may name another inode now
    } else if (item.name.empty()) {
      fuse_lowlevel_notify_inval_inode(se, item.node.ino, item.off, item.len);
    } else {
      fuse_lowlevel_notify_inval_entry(se, item.node.ino, item.name.c_str(), item.name.size());
      fuse_lowlevel_notify_inval_inode(se, item.node.ino, -1, 0);  // its mtime and size changed
    }
    lock.lock();
    busy_ = false;
    idle_.notify_all();
  }
  lock.unlock();
  if (at_exit_) at_exit_();  // stop() waits for it too
  lock.lock();
  tid_.store(0, std::memory_order_relaxed);
  busy_ = false;
  exited_ = true;
  idle_.notify_all();
}

}  // namespace portalfs::fuse
