// SPDX-License-Identifier: MIT
// The inode table on real files: refcounts, erase by key, siblings, and the bounded fd cache
// (evicted fds come back through open_by_handle_at; pinned and open ones are never evicted).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <thread>
#include <vector>

#include "fuse/inode_table.hpp"
#include "tests/testutil/temp_dir.hpp"

namespace portalfs::fuse {
namespace {

using testutil::TempDir;

struct Opened {
  int fd;
  struct stat st;
};

Opened open_path(const std::string& path) {
  int fd = ::open(path.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
  EXPECT_GE(fd, 0) << path;
  struct stat st {};
  ::fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
  return {fd, st};
}

int open_fd_count() {
  return static_cast<int>(std::distance(std::filesystem::directory_iterator("/proc/self/fd"),
                                        std::filesystem::directory_iterator()));
}

class InodeTableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = ::open(dir_.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);  // as a view's root
    for (int i = 0; i < 20; ++i) testutil::write_file(dir_ / ("f" + std::to_string(i)), "x");
  }
  void TearDown() override { ::close(root_); }
  TempDir dir_;
  int root_ = -1;
};

TEST_F(InodeTableTest, SameKeyIsOneInodeAndForgetErasesAtZero) {
  InodeTable table(100);
  auto a = open_path(dir_ / "f0");
  auto b = open_path(dir_ / "f0");
  auto i1 = table.find_or_insert(1, a.st, a.fd);
  auto i2 = table.find_or_insert(1, b.st, b.fd);
  ASSERT_TRUE(i1 && i2);
  EXPECT_EQ(*i1, *i2);
  EXPECT_EQ((*i1)->nlookup, 2u);
  EXPECT_EQ(table.stats().inodes, 1u);
  table.forget(*i1, 1);
  EXPECT_EQ(table.stats().inodes, 1u);
  table.forget(*i1, 1);
  EXPECT_EQ(table.stats().inodes, 0u);
  EXPECT_EQ(table.stats().cached_fds, 0u);
}

TEST_F(InodeTableTest, SameFileInTwoViewsIsTwoSiblingInodes) {
  InodeTable table(100);
  auto a = open_path(dir_ / "f1");
  auto b = open_path(dir_ / "f1");
  Inode* va = *table.find_or_insert(1, a.st, a.fd);
  Inode* vb = *table.find_or_insert(2, b.st, b.fd);
  EXPECT_NE(va, vb);
  using Sibling = InodeTable::Sibling;
  EXPECT_NE(va->generation, vb->generation);
  ASSERT_EQ(table.siblings(va), (std::vector<Sibling>{{vb, 2, vb->generation}}));
  ASSERT_EQ(table.siblings(vb), (std::vector<Sibling>{{va, 1, va->generation}}));
  ASSERT_EQ(table.inodes_of(va->dev, va->ino, 1), (std::vector<Sibling>{{vb, 2, vb->generation}}));
  table.forget(vb, 1);
  EXPECT_TRUE(table.siblings(va).empty());
  EXPECT_FALSE(InodeTable::has_siblings(va));
  table.forget(va, 1);
}

// A queued invalidation names an inode by its address (its node id): once the inode is
// forgotten, that address may hold another inode, which live() must not take for it.
TEST_F(InodeTableTest, LiveIsFalseOnceForgottenEvenWhenTheAddressIsReused) {
  InodeTable table(100);
  auto a = open_path(dir_ / "f2");
  Inode* first = *table.find_or_insert(1, a.st, a.fd);
  const uint32_t generation = first->generation;
  EXPECT_TRUE(table.live(first, generation, a.st.st_dev, a.st.st_ino));
  EXPECT_FALSE(table.live(first, generation + 1, a.st.st_dev, a.st.st_ino));
  EXPECT_FALSE(table.live(first, generation, a.st.st_dev, a.st.st_ino + 1000000));
  table.forget(first, 1);
  EXPECT_FALSE(table.live(first, generation, a.st.st_dev, a.st.st_ino));
  // The same file looked up again: often the same address, never the same generation.
  auto b = open_path(dir_ / "f2");
  Inode* again = *table.find_or_insert(1, b.st, b.fd);
  EXPECT_FALSE(table.live(first, generation, b.st.st_dev, b.st.st_ino));
  EXPECT_TRUE(table.live(again, again->generation, b.st.st_dev, b.st.st_ino));
  table.forget(again, 1);
}

TEST_F(InodeTableTest, EvictedFdsReopenByHandleAndTheCacheStaysBounded) {
  const int before = open_fd_count();
  InodeTable table(4);
  std::vector<Inode*> inodes;
  for (int i = 0; i < 20; ++i) {
    auto o = open_path(dir_ / ("f" + std::to_string(i)));
    inodes.push_back(*table.find_or_insert(1, o.st, o.fd));
  }
  EXPECT_EQ(table.stats().cached_fds, 4u);
  EXPECT_LE(open_fd_count(), before + 4);
  for (int i = 0; i < 20; ++i) {
    auto fd = table.fd(inodes[i], root_);
    ASSERT_TRUE(fd) << "inode " << i << ": errno " << fd.error();
    struct stat st {};
    ASSERT_EQ(::fstatat(fd->get(), "", &st, AT_EMPTY_PATH), 0);
    EXPECT_EQ(st.st_ino, inodes[i]->ino);  // the same file came back
  }
  EXPECT_EQ(table.stats().cached_fds, 4u);
  for (auto* i : inodes) table.forget(i, 1);
  EXPECT_EQ(open_fd_count(), before);
}

TEST_F(InodeTableTest, PinnedAndOpenFdsAreNotEvicted) {
  InodeTable table(2);
  auto a = open_path(dir_ / "f0");
  Inode* pinned = *table.find_or_insert(1, a.st, a.fd);
  auto b = open_path(dir_ / "f1");
  Inode* open = *table.find_or_insert(1, b.st, b.fd);
  table.opened(open);
  auto ref = table.fd(pinned, root_);
  ASSERT_TRUE(ref);
  const int pinned_fd = ref->get();
  for (int i = 2; i < 10; ++i) {
    auto o = open_path(dir_ / ("f" + std::to_string(i)));
    ASSERT_TRUE(table.find_or_insert(1, o.st, o.fd));
  }
  EXPECT_EQ(pinned->fd, pinned_fd);  // still the same, still open
  EXPECT_GE(open->fd, 0);
  struct stat st {};
  EXPECT_EQ(::fstat(pinned_fd, &st), 0);
  table.closed(open);
}

TEST_F(InodeTableTest, ADeletedFileIsStaleOnceEvicted) {
  InodeTable table(1);
  auto a = open_path(dir_ / "f0");
  Inode* gone = *table.find_or_insert(1, a.st, a.fd);
  ASSERT_EQ(::unlink((dir_ / "f0").c_str()), 0);
  auto b = open_path(dir_ / "f1");
  ASSERT_TRUE(table.find_or_insert(1, b.st, b.fd));  // evicts f0's fd
  auto fd = table.fd(gone, root_);
  ASSERT_FALSE(fd);
  EXPECT_EQ(fd.error(), ESTALE);
}

TEST_F(InodeTableTest, ConcurrentLookupsAndForgetsKeepCountsExact) {
  InodeTable table(8);
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 500; ++round) {
        auto o = open_path(dir_ / ("f" + std::to_string((round + t) % 20)));
        auto i = table.find_or_insert(1 + (round % 2), o.st, o.fd);
        if (!i) { failures++; continue; }
        auto fd = table.fd(*i, root_);
        if (!fd) failures++;
        table.forget(*i, 1);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(table.stats().inodes, 0u);
  EXPECT_EQ(table.stats().cached_fds, 0u);
}

}  // namespace
}  // namespace portalfs::fuse
