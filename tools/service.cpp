// SPDX-License-Identifier: MIT
#include "tools/service.hpp"

#include <systemd/sd-daemon.h>

#include <chrono>
#include <cstdint>

namespace portalfs::tools {
namespace {

// One line of state; a newline in `text` would start another assignment.
std::string one_line(std::string text) {
  for (char& c : text) {
    if (c == '\n') c = ' ';
  }
  return text;
}

}  // namespace

ServiceNotifier::~ServiceNotifier() { stop_watchdog(); }

void ServiceNotifier::status(const std::string& text) {
  ::sd_notify(0, ("STATUS=" + one_line(text)).c_str());
}

void ServiceNotifier::ready(const std::string& status) {
  ::sd_notify(0, ("READY=1\nSTATUS=" + one_line(status)).c_str());
}

void ServiceNotifier::stopping() {
  // Not joined here: the watchdog may be waiting for the mount's answer, which comes only once
  // the mount is gone (the loop has ended); the destructor joins it after the unmount.
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  ::sd_notify(0, "STOPPING=1\nSTATUS=stopping");
}

void ServiceNotifier::start_watchdog(std::function<bool()> alive) {
  uint64_t usec = 0;
  if (::sd_watchdog_enabled(0, &usec) <= 0 || usec == 0) return;
  const auto interval = std::chrono::microseconds(usec / 2);
  watchdog_ = std::thread([this, interval, alive = std::move(alive)] {
    std::unique_lock lock(mutex_);
    while (!stop_) {
      lock.unlock();
      if (alive()) ::sd_notify(0, "WATCHDOG=1");
      lock.lock();
      stop_cv_.wait_for(lock, interval, [this] { return stop_; });
    }
  });
}

void ServiceNotifier::stop_watchdog() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  if (watchdog_.joinable()) watchdog_.join();
}

}  // namespace portalfs::tools
