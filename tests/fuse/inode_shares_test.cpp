// SPDX-License-Identifier: MIT
// Fair shares of cached inodes (fuse/inode_shares.hpp) with the inode table on real files:
// a new inode is charged to its view's app, a re-lookup is not, a forgotten one gives its
// charge back, one app past its share gets ENFILE while the others do not, and a file seen by
// two apps is charged to each.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <thread>
#include <vector>

#include "fuse/inode_shares.hpp"
#include "fuse/inode_table.hpp"
#include "tests/testutil/temp_dir.hpp"

namespace portalfs::fuse {
namespace {

using testutil::TempDir;

constexpr ViewId kAlphaData = 1, kAlphaPool = 2, kBetaPool = 3;

class InodeSharesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < 40; ++i) testutil::write_file(dir_ / ("f" + std::to_string(i)), "x");
    shares_.bind(kAlphaData, "alpha");
    shares_.bind(kAlphaPool, "alpha");
    shares_.bind(kBetaPool, "beta");
  }

  // Looks file f<i> up in `view`, as a LOOKUP would.
  common::Result<Inode*> lookup(ViewId view, int i) {
    const std::string path = dir_ / ("f" + std::to_string(i));
    int fd = ::open(path.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
    EXPECT_GE(fd, 0) << path;
    struct stat st {};
    ::fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
    return table_.find_or_insert(view, st, fd);
  }

  size_t count(const std::string& app) { return shares_.counts()[app]; }

  TempDir dir_;
  InodeShares shares_{10, {{"alpha", 4}}};
  InodeTable table_{100, true, &shares_};
};

TEST_F(InodeSharesTest, NewInodesAreChargedAndForgottenOnesGiveBack) {
  auto a = lookup(kAlphaData, 0);
  ASSERT_TRUE(a);
  EXPECT_EQ(count("alpha"), 1u);
  auto again = lookup(kAlphaData, 0);  // the kernel looks it up again: the same inode
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, *a);
  EXPECT_EQ(count("alpha"), 1u);
  table_.forget(*a, 1);
  EXPECT_EQ(count("alpha"), 1u) << "still one lookup held";
  table_.forget(*a, 1);
  EXPECT_EQ(count("alpha"), 0u);
}

TEST_F(InodeSharesTest, PastItsShareOneAppGetsEnfileAlone) {
  std::vector<Inode*> held;
  for (int i = 0; i < 4; ++i) {
    auto in = lookup(i % 2 ? kAlphaPool : kAlphaData, i);  // the share is the app's, over its views
    ASSERT_TRUE(in) << i;
    held.push_back(*in);
  }
  auto over = lookup(kAlphaData, 4);
  ASSERT_FALSE(over);
  EXPECT_EQ(over.error(), ENFILE);
  EXPECT_EQ(count("alpha"), 4u);
  EXPECT_EQ(table_.stats().inodes, 4u) << "the refused lookup left nothing in the table";
  // A re-lookup of an inode alpha has costs nothing: not refused.
  auto known = lookup(kAlphaData, 0);
  ASSERT_TRUE(known);
  table_.forget(*known, 1);
  // beta has its own share of 10.
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(lookup(kBetaPool, 10 + i)) << i;
  auto beta_over = lookup(kBetaPool, 20);
  ASSERT_FALSE(beta_over);
  EXPECT_EQ(beta_over.error(), ENFILE);
  // alpha works again once the kernel forgets one of its inodes.
  table_.forget(held.back(), 1);
  EXPECT_TRUE(lookup(kAlphaData, 4));
}

TEST_F(InodeSharesTest, AFileSeenByTwoAppsIsChargedToEach) {
  auto a = lookup(kAlphaPool, 0);
  auto b = lookup(kBetaPool, 0);
  ASSERT_TRUE(a && b);
  EXPECT_NE(*a, *b);
  EXPECT_EQ(count("alpha"), 1u);
  EXPECT_EQ(count("beta"), 1u);
  table_.forget(*a, 1);
  EXPECT_EQ(count("alpha"), 0u);
  EXPECT_EQ(count("beta"), 1u) << "beta still holds its lookup";
  table_.forget(*b, 1);
  EXPECT_EQ(count("beta"), 0u);
}

TEST_F(InodeSharesTest, AnUnboundViewAndNoLimitAreNotCharged) {
  auto a = lookup(7, 0);  // no app named for view 7
  ASSERT_TRUE(a);
  EXPECT_EQ(shares_.take(7), InodeShares::Take::uncharged);
  table_.forget(*a, 1);  // gives nothing back: no counter goes below zero
  InodeShares unlimited(0);
  unlimited.bind(1, "alpha");
  EXPECT_EQ(unlimited.take(1), InodeShares::Take::uncharged);
  EXPECT_EQ(unlimited.counts()["alpha"], 0u);
  EXPECT_EQ(unlimited.limit_of("alpha"), 0u);
  EXPECT_EQ(shares_.limit_of("alpha"), 4u);
  EXPECT_EQ(shares_.limit_of("beta"), 10u);
}

// A create's charge is taken before the file is made: refused past the share (nothing is made),
// handed to the new inode, or given back when the inode was known or nothing was made.
TEST_F(InodeSharesTest, AChargeTakenBeforeMakingGoesToTheNewInodeOrBack) {
  {
    InodeCharge unused(shares_, kAlphaData);
    EXPECT_FALSE(unused.refused());
    EXPECT_EQ(count("alpha"), 1u);
  }
  EXPECT_EQ(count("alpha"), 0u) << "nothing made: given back";
  Inode* made = nullptr;
  {
    InodeCharge charge(shares_, kAlphaData);
    const std::string path = dir_ / "f0";
    int fd = ::open(path.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
    struct stat st {};
    ::fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
    auto in = table_.find_or_insert(kAlphaData, st, fd, &charge);
    ASSERT_TRUE(in);
    made = *in;
  }
  EXPECT_EQ(count("alpha"), 1u) << "the new inode holds the charge";
  {
    InodeCharge again(shares_, kAlphaData);
    auto known = lookup(kAlphaData, 0);  // as make_entry with a known inode
    ASSERT_TRUE(known);
    EXPECT_EQ(count("alpha"), 2u);
    table_.forget(*known, 1);
  }
  EXPECT_EQ(count("alpha"), 1u) << "a known inode: the charge went back";
  std::vector<std::unique_ptr<InodeCharge>> full;
  for (int i = 0; i < 3; ++i) full.push_back(std::make_unique<InodeCharge>(shares_, kAlphaData));
  InodeCharge over(shares_, kAlphaData);
  EXPECT_TRUE(over.refused());
  EXPECT_EQ(count("alpha"), 4u);
  full.clear();
  table_.forget(made, 1);
  EXPECT_EQ(count("alpha"), 0u);
}

// Racing lookups of the same new file: one inode, charged once (the loser gives back).
TEST_F(InodeSharesTest, RacingLookupsOfOneFileChargeOnce) {
  for (int round = 0; round < 50; ++round) {
    std::vector<std::thread> threads;
    std::vector<Inode*> got(4, nullptr);
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        auto in = lookup(kBetaPool, round % 10);
        if (in) got[static_cast<size_t>(t)] = *in;
      });
    }
    for (auto& t : threads) t.join();
    for (Inode* in : got) ASSERT_EQ(in, got[0]);
    EXPECT_EQ(count("beta"), 1u) << "round " << round;
    table_.forget(got[0], 4);
    EXPECT_EQ(count("beta"), 0u);
  }
}

}  // namespace
}  // namespace portalfs::fuse
