// SPDX-License-Identifier: MIT
#pragma once

// Telling systemd how portalfsd is doing (sd_notify(3), Type=notify): READY=1 once the mount
// answers, STATUS= lines, STOPPING=1 at shutdown, and WATCHDOG=1 while the mount answers.
// Without NOTIFY_SOCKET (not started by systemd) every call does nothing.

#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace portalfs::tools {

class ServiceNotifier {
 public:
  ServiceNotifier() = default;
  /// Stops the watchdog: destroy it after the mount is gone (its check may wait for the mount).
  ~ServiceNotifier();
  ServiceNotifier(const ServiceNotifier&) = delete;
  ServiceNotifier& operator=(const ServiceNotifier&) = delete;

  void status(const std::string& text);
  /// READY=1 with a STATUS= line: the service is up (systemctl start returns).
  void ready(const std::string& status);
  /// STOPPING=1: the service is shutting down.
  void stopping();
  /// When systemd asked for a watchdog (WATCHDOG_USEC), sends WATCHDOG=1 at half that interval
  /// each time `alive()` returns true; alive() hanging (a stuck mount) lets systemd restart us.
  void start_watchdog(std::function<bool()> alive);

 private:
  void stop_watchdog();

  std::mutex mutex_;
  std::condition_variable stop_cv_;
  bool stop_ = false;
  std::thread watchdog_;
};

}  // namespace portalfs::tools
