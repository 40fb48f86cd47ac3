// SPDX-License-Identifier: MIT
#pragma once

// A gtest fixture that runs the real portalfsd over temporary directories and talks to it
// with the real portalctl. Teardown stops the daemon it started (by pid) and unmounts.

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "tests/testutil/process.hpp"
#include "tests/testutil/temp_dir.hpp"

namespace portalfs::testutil {

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

  TempDir dir_{"portalfs-daemon"};
  /// Appended to daemon_argv() (e.g. {"--layout", "freeshard"}).
  std::vector<std::string> extra_daemon_args_;
  std::unique_ptr<Child> daemon_;
};

}  // namespace portalfs::testutil
