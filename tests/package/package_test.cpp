// SPDX-License-Identifier: MIT
// The Debian package (#15), as an operator uses it: scripts/package builds it, lintian finds no
// error, dpkg -i installs it into this machine, the daemon starts as the unit's ExecStart line
// starts it (its config file edited to the test's directories), the example app installs and
// serves, an install of the package again (an upgrade) keeps config, state and data, and
// dpkg -r removes the programs while the data stays. Whatever happens, the test
// stops its daemon and purges the package.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/testutil/daemon_fixture.hpp"

namespace portalfs::testutil {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

constexpr const char* kUnit = "/lib/systemd/system/portalfsd.service";
constexpr const char* kConfig = "/etc/portalfs/portalfsd.conf";

bool package_known() {
  return run_command({"/usr/bin/dpkg-query", "-W", "-f=${Status}", "portalfs"}).code == 0;
}

// The words of the unit's ExecStart= line.
std::vector<std::string> exec_start() {
  std::istringstream unit(read_file(kUnit));
  for (std::string line; std::getline(unit, line);) {
    if (!line.starts_with("ExecStart=")) continue;
    std::istringstream words(line.substr(10));
    std::vector<std::string> argv;
    for (std::string w; words >> w;) argv.push_back(w);
    return argv;
  }
  return {};
}

class Package : public DaemonFixture {
 protected:
  void TearDown() override {
    if (daemon_ && !daemon_->exited()) daemon_->stop(SIGTERM, 30s);
    daemon_.reset();
    if (mounted(mnt())) ::umount2(mnt().c_str(), MNT_DETACH);
    if (installed_by_test_ && package_known()) {
      auto r = run_command({"/usr/bin/dpkg", "--purge", "portalfs"}, 120s);
      if (r.code != 0) ADD_FAILURE() << "dpkg --purge portalfs failed; remove it by hand:\n" << r.out << r.err;
    }
    DaemonFixture::TearDown();
  }

  CommandResult installed_ctl(std::vector<std::string> args) {
    args.insert(args.begin(), {"/usr/sbin/portalctl", "--socket", sock()});
    return run_command(args);
  }

  bool installed_by_test_ = false;
};

TEST_F(Package, InstallsRunsAsTheUnitWouldAndRemovalKeepsTheData) {
  for (const char* tool : {"/usr/bin/dpkg", "/usr/bin/dpkg-deb", "/usr/bin/lintian"}) {
    ASSERT_TRUE(fs::exists(tool)) << tool << " is missing: apt-get install dpkg-dev lintian";
  }
  ASSERT_FALSE(package_known()) << "portalfs is installed on this machine already (dpkg -l portalfs); "
                                   "this test installs and purges it: remove it first with dpkg --purge portalfs";

  auto r = run_command({source_dir() + "/scripts/package", "--build-dir", build_dir()}, 300s);
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  const std::string deb = source_dir() + "/" + r.out.substr(0, r.out.find('\n'));
  EXPECT_THAT(deb, ::testing::MatchesRegex(".*/dist/portalfs_[0-9.]+_amd64\\.deb"));
  ASSERT_TRUE(fs::exists(deb)) << deb;

  r = run_command({"/usr/bin/lintian", deb}, 300s);
  EXPECT_EQ(r.out.find("E: "), std::string::npos) << r.out;
  EXPECT_EQ(r.out.rfind("E: ", 0), std::string::npos) << r.out;

  installed_by_test_ = true;
  r = run_command({"/usr/bin/dpkg", "-i", deb}, 120s);
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  for (const std::string& file : std::vector<std::string>{"/usr/sbin/portalfsd", "/usr/sbin/portalctl", kUnit, kConfig,
                                 "/usr/share/man/man8/portalfsd.8.gz", "/usr/share/man/man8/portalctl.8.gz",
                                 "/usr/share/man/man5/portalfs-manifest.5.gz",
                                 "/usr/share/bash-completion/completions/portalctl",
                                 "/usr/share/doc/portalfs/examples/notes.json"}) {
    EXPECT_TRUE(fs::exists(file)) << file;
  }
  // Installed, the unit verifies with its man pages too.
  r = run_command({"/usr/bin/systemd-analyze", "verify", kUnit}, 60s);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err, "");

  // The operator's edit of the config file, then the unit's ExecStart line as it is.
  {
    std::ofstream conf(kConfig, std::ios::app);
    conf << "storage-root = " << storage() << "\nmountpoint = " << mnt() << "\nstate-dir = " << (dir_ / "state")
         << "\nsocket = " << sock() << "\n";
  }
  const auto argv = exec_start();
  ASSERT_EQ(argv, (std::vector<std::string>{"/usr/sbin/portalfsd", "--foreground"}));
  daemon_ = std::make_unique<Child>(argv, dir_ / "daemon.log");
  ASSERT_TRUE(wait_until([&] { return installed_ctl({"status"}).code == 0; }, 10s)) << read_file(dir_ / "daemon.log");

  r = installed_ctl({"app", "install", "/usr/share/doc/portalfs/examples/notes.json"});
  ASSERT_EQ(r.code, 0) << r.err;
  write_file(mnt() + "/apps/notes/data/data/hello.txt", "kept\n");
  EXPECT_EQ(read_file(storage() + "/apps/notes/data/hello.txt"), "kept\n");
  r = run_command({"/usr/sbin/portalctl", "doctor", "--config", kConfig});
  EXPECT_THAT(r.out, HasSubstr("PASS daemon: portalfsd answers on " + sock() + "\n"));
  EXPECT_THAT(r.out, HasSubstr("PASS state: " + (dir_ / "state/state.json") + " is good\n"));
  ASSERT_EQ(daemon_->stop(SIGTERM), 0);

  // An upgrade installs the newer .deb over the old one (here the same one again): the
  // operator's config, the state and the data stay, and the daemon serves them again.
  r = run_command({"/usr/bin/dpkg", "-i", deb}, 120s);
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_THAT(read_file(kConfig), HasSubstr("storage-root = " + storage() + "\n"));
  daemon_ = std::make_unique<Child>(exec_start(), dir_ / "daemon.log");
  ASSERT_TRUE(wait_until([&] { return installed_ctl({"status"}).code == 0; }, 10s)) << read_file(dir_ / "daemon.log");
  r = installed_ctl({"app", "list"});
  EXPECT_THAT(r.out, HasSubstr("notes")) << r.err;
  EXPECT_EQ(read_file(mnt() + "/apps/notes/data/data/hello.txt"), "kept\n");
  ASSERT_EQ(daemon_->stop(SIGTERM), 0);

  r = run_command({"/usr/bin/dpkg", "-r", "portalfs"}, 120s);
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_FALSE(fs::exists("/usr/sbin/portalfsd"));
  EXPECT_FALSE(fs::exists("/usr/sbin/portalctl"));
  EXPECT_FALSE(fs::exists(kUnit));
  EXPECT_TRUE(fs::exists(kConfig)) << "a removal keeps the operator's config (a conffile)";
  EXPECT_EQ(read_file(storage() + "/apps/notes/data/hello.txt"), "kept\n");
  EXPECT_TRUE(fs::exists(dir_ / "state/state.json"));

  r = run_command({"/usr/bin/dpkg", "--purge", "portalfs"}, 120s);
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_FALSE(fs::exists(kConfig));
  EXPECT_FALSE(package_known());
  EXPECT_EQ(read_file(storage() + "/apps/notes/data/hello.txt"), "kept\n") << "a purge keeps the data too";
}

}  // namespace
}  // namespace portalfs::testutil
