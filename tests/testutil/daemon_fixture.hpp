// SPDX-License-Identifier: MIT
#pragma once

// A gtest fixture that runs the real portalfsd over temporary directories and talks to it
// with the real portalctl. Teardown stops the daemon it started (by pid) and unmounts.

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tests/testutil/process.hpp"
#include "tests/testutil/temp_dir.hpp"

namespace portalfs::testutil {

/// Ends the FUSE connection of the mount at `mountpoint` through fusectl (mounted on
/// /sys/fs/fuse/connections first if nobody did). A portalfsd killed while one of its own
/// threads waits in a request to its own mount (an event's echo) can't exit unless its guardian
/// aborts the connection (fuse/guardian.hpp); the tests do it themselves when that failed, so
/// that the failure is a failed test, not a hung one.
void abort_connection_at(const std::string& mountpoint);

class DaemonFixture : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  [[nodiscard]] std::string mnt() const { return dir_ / "mnt"; }
  [[nodiscard]] std::string sock() const { return dir_ / "portalfs.sock"; }
  [[nodiscard]] std::string storage() const { return dir_ / "storage"; }
  [[nodiscard]] std::vector<std::string> daemon_argv() const;
  /// Runs portalctl against this daemon.
  CommandResult ctl(std::vector<std::string> args);
  /// Starts portalfsd and waits until it answers (fatal failure otherwise).
  void start();
  /// Whether something is mounted at `path`.
  static bool mounted(const std::string& path);
  /// Writes DIR/<app>.json: an app (version "1") with `data_dirs` (JSON) and each share
  /// (name, access) at /<name>.
  void write_app(const std::string& app, const std::vector<std::pair<std::string, std::string>>& shares,
                 const std::string& data_dirs = R"(["/data"])");
  /// Installs DIR/<app>.json for each app with portalctl (fatal failure if it refuses one).
  void install_apps(const std::vector<std::string>& apps);

  TempDir dir_{"portalfs-daemon"};
  /// Appended to daemon_argv() (e.g. {"--layout", "freeshard"}).
  std::vector<std::string> extra_daemon_args_;
  std::unique_ptr<Child> daemon_;
};

}  // namespace portalfs::testutil
