// SPDX-License-Identifier: MIT
// portalfsd's config file (#15), read by the real daemon: its options are used, the command
// line wins over it, and a bad line is one line naming file and line, exit 2, nothing made.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>

#include "tests/testutil/daemon_fixture.hpp"

namespace portalfs::testutil {
namespace {

using namespace std::chrono_literals;

class DaemonConfigFile : public DaemonFixture {
 protected:
  [[nodiscard]] std::string conf() const { return dir_ / "portalfsd.conf"; }
};

TEST_F(DaemonConfigFile, ServesWhatTheFileSaysAndTheCommandLineWins) {
  write_file(conf(), "# as an operator writes it\n"
                     "storage-root = " + storage() + "\n"
                     "mountpoint = " + mnt() + "\n"
                     "state-dir = " + (dir_ / "state") + "\n"
                     "socket = " + (dir_ / "from-file.sock") + "\n"
                     "foreground = true\n");
  Child daemon({program("portalfsd"), "--config", conf(), "--socket", sock()}, dir_ / "daemon.log");
  ASSERT_TRUE(wait_until([&] { return ctl({"status"}).code == 0; }, 10s)) << read_file(dir_ / "daemon.log");
  EXPECT_TRUE(mounted(mnt()));
  EXPECT_TRUE(std::filesystem::exists(storage() + "/.portalfs-store"));
  EXPECT_FALSE(std::filesystem::exists(dir_ / "from-file.sock"));
  EXPECT_EQ(daemon.stop(SIGTERM), 0);  // in the foreground, as the file says: this is the daemon
}

TEST_F(DaemonConfigFile, ABadLineIsOneLineExit2AndNothingIsMade) {
  write_file(conf(), "state-dir = " + (dir_ / "new-state") + "\n\nthreds = 4\n");
  auto r = run_command({program("portalfsd"), "--config", conf(), "--foreground", "--mountpoint", mnt(),
                        "--storage-root", storage(), "--socket", sock()});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.err, "portalfsd: " + conf() + ":3: unrecognised option 'threds'; see portalfsd --help\n");
  EXPECT_EQ(r.out, "");
  EXPECT_FALSE(std::filesystem::exists(dir_ / "new-state"));
  EXPECT_FALSE(std::filesystem::exists(storage()));
  EXPECT_FALSE(mounted(mnt()));
}

}  // namespace
}  // namespace portalfs::testutil
