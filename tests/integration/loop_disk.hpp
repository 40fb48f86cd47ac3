// SPDX-License-Identifier: MIT
#pragma once

// The quota suites' disk: a loop image in the test's temp dir (dir_/disk.img) mounted at the
// storage root, unmounted and detached in TearDown once the daemon (which holds fds on it) has
// stopped. Needs loop devices and the image's mkfs (scripts/deps): without them the test fails,
// never skips.

#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>

#include "tests/integration/notes_app.hpp"
#include "tests/testutil/process.hpp"

namespace portalfs::testutil {

inline CommandResult sh(const std::string& script) {
  return run_command({"/bin/sh", "-c", "PATH=/usr/sbin:/usr/bin:/sbin:/bin; " + script}, std::chrono::seconds(60));
}

class LoopDisk : public NotesApp {
 protected:
  std::string image = dir_ / "disk.img";
  std::string loop;

  // An image of `size` made by `mkfs` (a command the image's path is appended to), mounted at
  // the storage root with `mount_options`.
  void make_disk(const std::string& size, const std::string& mkfs, const std::string& mount_options) {
    ASSERT_EQ(::access("/dev/loop-control", R_OK | W_OK), 0) << "quota tests need loop devices: no /dev/loop-control";
    auto r = sh("truncate -s " + size + " '" + image + "' && " + mkfs + " '" + image + "'");
    ASSERT_EQ(r.code, 0) << "cannot make the image with " << mkfs << " (scripts/deps installs it): " << r.err;
    r = sh("losetup --find --show '" + image + "'");
    ASSERT_EQ(r.code, 0) << "quota tests need loop devices: losetup failed: " << r.err;
    loop = r.out.substr(0, r.out.find('\n'));
    std::filesystem::create_directories(storage());
    r = sh("mount " + mount_options + " " + loop + " '" + storage() + "'");
    ASSERT_EQ(r.code, 0) << "cannot mount " << loop << " " << mount_options << ": " << r.err
                         << "(the kernel's word: " << sh("dmesg | tail -n 2").out << ")";
  }

  void TearDown() override {
    DaemonFixture::TearDown();  // stops the daemon first: it holds fds on the disk
    for (int i = 0; i < 3 && mounted(storage()); ++i) {
      if (::umount2(storage().c_str(), 0) != 0) ::umount2(storage().c_str(), MNT_DETACH);
    }
    if (!loop.empty()) sh("losetup -d " + loop);
  }
};

}  // namespace portalfs::testutil
