// SPDX-License-Identifier: MIT
// The daemon's quota counters (fuse/quota_account.hpp) without a mount: the first walk's
// count (sizes once per inode, every entry one inode), ops waiting for it, its progress, and
// limits taken and checked under one lock by many threads.
#include "fuse/quota_account.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/testutil/temp_dir.hpp"

namespace portalfs::fuse {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

common::UniqueFd open_dir(const std::string& path) {
  return common::UniqueFd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
}

TEST(QuotaCountTree, SizesOncePerInodeAndOneInodePerEntry) {
  testutil::TempDir tmp;
  const std::string root = tmp / "root";
  fs::create_directories(root + "/a/b");
  testutil::write_file(root + "/one", std::string(1000, '1'));
  testutil::write_file(root + "/a/two", std::string(20, '2'));
  fs::create_hard_link(root + "/a/two", root + "/a/b/two.link");  // counted once
  fs::create_symlink("one", root + "/a/sym");                     // an inode, no bytes
  QuotaCounter counter("apps/x");
  std::set<std::pair<dev_t, ino_t>> linked;
  std::stop_source stop;
  count_tree(open_dir(root).get(), counter, linked, stop.get_token());
  const auto u = counter.usage();
  EXPECT_EQ(u.bytes, 1020u);
  EXPECT_EQ(u.inodes, 5u);  // one, a, a/b, a/two, a/sym (the link is the same inode as a/two)
  EXPECT_EQ(u.walked, 5u);
  EXPECT_FALSE(u.counted);
}

TEST(QuotaAccounts, OpsWaitForTheFirstWalkWhichStatusShows) {
  testutil::TempDir tmp;
  const std::string root = tmp / "root";
  fs::create_directories(root);
  testutil::write_file(root + "/f", std::string(100, 'f'));
  QuotaAccounts accounts;
  auto dir = open_dir(root);
  accounts.update({{"apps/x", {policy::QuotaLimits{150, 0}, {dir.get()}}}});
  auto counter = accounts.find("apps/x");
  ASSERT_TRUE(counter);
  EXPECT_EQ(accounts.progress(), "counting 1 of 1 limits (first walk; 0 entries so far; their writes wait)");
  std::atomic<int> result{-1};
  std::jthread op([&] { result = counter->charge(60, 0); });  // waits: the walk has not started
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(result.load(), -1);
  accounts.start();
  op.join();
  EXPECT_EQ(result.load(), EDQUOT);  // 100 counted + 60 > 150
  EXPECT_EQ(counter->charge(50, 0), 0);  // exactly at the limit
  EXPECT_EQ(counter->usage().bytes, 150u);
  EXPECT_EQ(accounts.progress(), "");
  // A limit gone drops its counter; set again, it counts afresh.
  accounts.update({});
  EXPECT_FALSE(accounts.find("apps/x"));
}

TEST(QuotaAccounts, ManyWritersNeverPassTheLimitTogether) {
  testutil::TempDir tmp;
  fs::create_directories(tmp / "root");
  QuotaAccounts accounts;
  auto dir = open_dir(tmp / "root");
  accounts.update({{"shared/s", {policy::QuotaLimits{1'000'000, 0}, {dir.get()}}}});
  accounts.start();
  auto counter = accounts.find("shared/s");
  std::atomic<uint64_t> taken{0};
  std::vector<std::jthread> writers;
  for (int t = 0; t < 8; ++t) {
    writers.emplace_back([&] {
      // Each appends 997 bytes at a time to a file of its own, until nothing fits.
      uint64_t size = 0;
      while (uint64_t n = counter->charge_write(size, size, 997)) {
        size += n;
        taken += n;
      }
    });
  }
  writers.clear();
  EXPECT_EQ(taken.load(), 1'000'000u);
  EXPECT_EQ(counter->usage().bytes, 1'000'000u);
  EXPECT_EQ(counter->room().first, 0u);
}

}  // namespace
}  // namespace portalfs::fuse
