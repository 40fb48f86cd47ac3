// SPDX-License-Identifier: MIT
// Issue #15: on the host, only root (and the admin group, if configured) may go through the
// directories above the views; an ordinary user reads, lists and writes nothing of any view.
// The real portalfsd, tried with setpriv as a new user would. Containers reach their views
// through bind mounts (tests/container, tests/tools/attach_test.cpp).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>

#include "tests/testutil/daemon_fixture.hpp"

namespace portalfs::testutil {
namespace {

using ::testing::HasSubstr;

constexpr const char* kNobody = "65534";
constexpr const char* kAdminGid = "4242";

class HostHardening : public DaemonFixture {
 protected:
  void SetUp() override {
    DaemonFixture::SetUp();
    write_app("alpha", {{"photos", "read-write"}}, R"([{"path": "/data", "uid": 1000, "gid": 1000}])");
  }

  // An app with a world-readable file and a world-writable directory in each of its views:
  // only the directories above the views can keep a host user out.
  void install_alpha() {
    ASSERT_EQ(ctl({"share", "create", "photos"}).code, 0);
    ASSERT_NO_FATAL_FAILURE(install_apps({"alpha"}));
    for (const std::string& view : {data_view(), share_view()}) {
      write_file(view + "/notes.txt", "alpha's notes\n");
      ASSERT_EQ(::chmod((view + "/notes.txt").c_str(), 0644), 0);
      ASSERT_EQ(::mkdir((view + "/open").c_str(), 0777), 0);
      ASSERT_EQ(::chmod((view + "/open").c_str(), 0777), 0);
    }
  }

  [[nodiscard]] std::string data_view() const { return mnt() + "/apps/alpha/data/data"; }
  [[nodiscard]] std::string share_view() const { return mnt() + "/apps/alpha/shared/photos"; }

  // `argv` run as uid/gid 65534 with no supplementary group but `groups` (setpriv's syntax).
  static CommandResult as_nobody(std::vector<std::string> argv, const std::string& groups = "") {
    std::vector<std::string> full = {"/usr/bin/setpriv", "--reuid", kNobody, "--regid", kNobody};
    if (groups.empty()) {
      full.emplace_back("--clear-groups");
    } else {
      full.insert(full.end(), {"--groups", groups});
    }
    full.insert(full.end(), argv.begin(), argv.end());
    return run_command(full);
  }

  static void expect_denied(const CommandResult& r, const std::string& what) {
    EXPECT_NE(r.code, 0) << what << " succeeded: " << r.out;
    EXPECT_THAT(r.err, HasSubstr("Permission denied")) << what;
    EXPECT_EQ(r.out, "") << what;
  }
};

TEST_F(HostHardening, AnOrdinaryUserReadsListsAndWritesNothingOfAnyView) {
  ASSERT_TRUE(std::filesystem::exists("/usr/bin/setpriv")) << "setpriv (util-linux) is needed";
  ASSERT_NO_FATAL_FAILURE(start());
  ASSERT_NO_FATAL_FAILURE(install_alpha());
  // The fixture opened its temporary directory (0755): the mount's own directories decide.
  for (const std::string& view : {data_view(), share_view()}) {
    expect_denied(as_nobody({"/bin/cat", view + "/notes.txt"}), "cat " + view);
    expect_denied(as_nobody({"/bin/ls", view}), "ls " + view);
    expect_denied(as_nobody({"/usr/bin/touch", view + "/open/planted"}), "touch in " + view);
    EXPECT_FALSE(std::filesystem::exists(view + "/open/planted"));
  }
  for (const std::string& top : {mnt(), mnt() + "/apps", mnt() + "/apps/alpha", mnt() + "/apps/alpha/shared"}) {
    expect_denied(as_nobody({"/bin/ls", top}), "ls " + top);
    struct stat st {};
    ASSERT_EQ(::stat(top.c_str(), &st), 0) << top;
    EXPECT_EQ(st.st_mode & 07777, 0500u) << top;
    EXPECT_EQ(st.st_uid, 0u) << top;
  }
  // Root still gets through, and the data is there.
  EXPECT_EQ(read_file(data_view() + "/notes.txt"), "alpha's notes\n");
}

TEST_F(HostHardening, TheAdminGroupMayGoThroughTheTopDirectoriesAndNoFurther) {
  extra_daemon_args_ = {"--admin-group", kAdminGid};
  ASSERT_NO_FATAL_FAILURE(start());
  ASSERT_NO_FATAL_FAILURE(install_alpha());
  struct stat st {};
  ASSERT_EQ(::stat((mnt() + "/apps").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0550u);
  EXPECT_EQ(st.st_gid, 4242u);

  auto r = as_nobody({"/bin/ls", mnt() + "/apps"}, kAdminGid);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "alpha\n");
  // Beyond them the views' own owners and modes apply, as in a container.
  ASSERT_EQ(::chmod(data_view().c_str(), 0755), 0);
  r = as_nobody({"/bin/cat", data_view() + "/notes.txt"}, kAdminGid);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "alpha's notes\n");
  expect_denied(as_nobody({"/usr/bin/touch", data_view() + "/planted"}, kAdminGid), "touch in the data view");
  // Without the group: nothing.
  expect_denied(as_nobody({"/bin/ls", mnt() + "/apps"}), "ls apps without the group");
}

TEST_F(HostHardening, TheDaemonCreatesItsDirectoriesForRootAlone) {
  // The fixture's state dir is replaced by one the daemon must create, nested like the default
  // /var/lib/portalfs; the storage root and the mountpoint do not exist yet either.
  std::filesystem::remove_all(dir_ / "state");
  ASSERT_NO_FATAL_FAILURE(start());
  for (const std::string& dir : {dir_ / "state", storage()}) {
    struct stat st {};
    ASSERT_EQ(::stat(dir.c_str(), &st), 0) << dir;
    EXPECT_EQ(st.st_mode & 07777, 0700u) << dir;
  }
  expect_denied(as_nobody({"/bin/ls", storage()}), "ls the storage root");
  expect_denied(as_nobody({"/bin/ls", dir_ / "state"}), "ls the state dir");
}

TEST_F(HostHardening, TheSocketDirectoryIsCreatedForRootOrTheAdminGroup) {
  // /run/portalfs in small: a socket in a directory that does not exist yet.
  const std::string run_dir = dir_ / "run/portalfs";
  const std::string socket = run_dir + "/portalfs.sock";
  extra_daemon_args_ = {"--admin-group", kAdminGid};
  auto argv = daemon_argv();
  argv[std::find(argv.begin(), argv.end(), std::string("--socket")) - argv.begin() + 1] = socket;
  Child daemon(argv, dir_ / "daemon.log");
  ASSERT_TRUE(wait_until([&] { return std::filesystem::exists(socket); }, std::chrono::seconds(10)))
      << read_file(dir_ / "daemon.log");
  struct stat st {};
  ASSERT_EQ(::stat(run_dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0750u);
  EXPECT_EQ(st.st_gid, 4242u);
  EXPECT_EQ(daemon.stop(SIGTERM), 0);
}

}  // namespace
}  // namespace portalfs::testutil
