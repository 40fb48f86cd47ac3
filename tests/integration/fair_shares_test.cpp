// SPDX-License-Identifier: MIT
// One app can't starve the others (#15): portalfsd under a small open-file limit; app A opens
// more files than the whole limit allows and is refused with EMFILE once it holds its share,
// while app B keeps creating, reading and listing in all its views.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "common/unique_fd.hpp"
#include "tests/testutil/daemon_fixture.hpp"

namespace portalfs::testutil {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

constexpr int kLimit = 512;  // the daemon's open-file limit: a 256-fd cache, 128 files per app

class FairShares : public DaemonFixture {
 protected:
  void SetUp() override {
    DaemonFixture::SetUp();
    for (const std::string app : {"alpha", "beta"}) {
      write_file(dir_ / (app + ".json"), R"({"name": ")" + app + R"(", "data_dirs": ["/data"],
        "shared_dirs": [{"name": "pool", "path": "/pool", "access": "read-write"}]})");
    }
  }

  void start_limited(std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {"/usr/bin/prlimit", "--nofile=" + std::to_string(kLimit) + ":" + std::to_string(kLimit)};
    for (const auto& a : daemon_argv()) argv.push_back(a);
    argv.insert(argv.end(), extra.begin(), extra.end());
    daemon_ = std::make_unique<Child>(argv, dir_ / "daemon.log");
    ASSERT_TRUE(wait_until([&] { return ctl({"status"}).code == 0; }, 10s)) << read_file(dir_ / "daemon.log");
    ASSERT_EQ(ctl({"share", "create", "pool"}).code, 0);
    for (const std::string app : {"alpha", "beta"}) ASSERT_EQ(ctl({"app", "install", dir_ / (app + ".json")}).code, 0);
  }

  std::string view(const std::string& app, const std::string& rest) const { return mnt() + "/apps/" + app + "/" + rest; }

  // Opens new files in `dir` until one fails; returns the fds it got and the errno that stopped it.
  static std::pair<std::vector<common::UniqueFd>, int> open_until_refused(const std::string& dir, int at_most) {
    std::vector<common::UniqueFd> fds;
    for (int i = 0; i < at_most; ++i) {
      common::UniqueFd fd(::open((dir + "/f" + std::to_string(i)).c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644));
      if (!fd) return {std::move(fds), errno};
      fds.push_back(std::move(fd));
    }
    return {std::move(fds), 0};
  }

  // What beta does meanwhile: create, write, read back and list in both its views.
  void expect_beta_works(const std::string& tag) {
    for (const std::string v : {"data/data", "shared/pool"}) {
      const std::string dir = view("beta", v) + "/" + tag;
      ASSERT_TRUE(std::filesystem::create_directory(dir)) << dir;
      for (int i = 0; i < 20; ++i) write_file(dir + "/b" + std::to_string(i), "beta " + std::to_string(i));
      for (int i = 0; i < 20; ++i) EXPECT_EQ(read_file(dir + "/b" + std::to_string(i)), "beta " + std::to_string(i));
      EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir), {}), 20) << dir;
    }
  }
};

TEST_F(FairShares, TheGreedyAppAloneGetsEmfileAndTheOtherKeepsWorking) {
  ASSERT_TRUE(std::filesystem::exists("/usr/bin/prlimit")) << "prlimit (util-linux) is needed";
  ASSERT_NO_FATAL_FAILURE(start_limited());
  EXPECT_THAT(read_file(dir_ / "daemon.log"), HasSubstr("open-file limit 512: caching at most 256 O_PATH fds; each app may hold 128 files open"));
  // alpha tries to hold more files than the daemon may open at all, in its shared view (the
  // costly one: not passed through) and then in its data view.
  auto [held, err] = open_until_refused(view("alpha", "shared/pool"), kLimit + 100);
  EXPECT_EQ(err, EMFILE);
  EXPECT_EQ(held.size(), 128u);
  auto [more, err2] = open_until_refused(view("alpha", "data/data"), 10);
  EXPECT_EQ(err2, EMFILE) << "the share is the app's, over all its views";
  EXPECT_TRUE(more.empty());
  ASSERT_NO_FATAL_FAILURE(expect_beta_works("while-alpha-holds"));
  // alpha gets its share back as it closes.
  held.pop_back();
  common::UniqueFd again(::open((view("alpha", "data/data") + "/again").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644));
  EXPECT_TRUE(again) << std::strerror(errno);
  EXPECT_EQ(ctl({"status"}).code, 0);
}

TEST_F(FairShares, TheShareIsAnOption) {
  ASSERT_NO_FATAL_FAILURE(start_limited({"--open-files-per-app", "10"}));
  auto [held, err] = open_until_refused(view("alpha", "data/data"), 50);
  EXPECT_EQ(err, EMFILE);
  EXPECT_EQ(held.size(), 10u);
  auto [beta_held, beta_err] = open_until_refused(view("beta", "data/data"), 10);
  EXPECT_EQ(beta_err, 0);
  EXPECT_EQ(beta_held.size(), 10u);
}

// One app's share set apart from the others' (--open-files-of), in both views of the app.
TEST_F(FairShares, TheShareIsConfigurablePerApp) {
  ASSERT_NO_FATAL_FAILURE(start_limited({"--open-files-per-app", "10", "--open-files-of", "alpha=3"}));
  EXPECT_THAT(read_file(dir_ / "daemon.log"), HasSubstr("app alpha may hold 3 files open"));
  auto [held, err] = open_until_refused(view("alpha", "shared/pool"), 50);
  EXPECT_EQ(err, EMFILE);
  EXPECT_EQ(held.size(), 3u);
  auto [more, err2] = open_until_refused(view("alpha", "data/data"), 5);
  EXPECT_EQ(err2, EMFILE);
  EXPECT_TRUE(more.empty());
  auto [beta_held, beta_err] = open_until_refused(view("beta", "data/data"), 50);
  EXPECT_EQ(beta_err, EMFILE);
  EXPECT_EQ(beta_held.size(), 10u);
}

}  // namespace
}  // namespace portalfs::testutil
