// SPDX-License-Identifier: MIT
// Cross-view coherence (DESIGN "The filesystem"): one backing directory seen through two
// views is two FUSE inodes per file, and a change through one view must reach what the
// kernel cached for the other. App A has a read-write data view of the directory, app B a
// read-only shared view of the same directory.
//
// The mount uses 60 s entry and attribute timeouts here, so nothing below can pass by the
// kernel's cache simply expiring: whatever B sees within the 1 s polls came from an
// invalidation. Names are invalidated just after the reply (filesystem.hpp says why), so
// those are polled. A file two views show is served without the page cache in B (and through
// its backing file in A) and its attributes do not stay cached: its data and attributes must
// be right at once.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tests/integration/fs_helpers.hpp"
#include "tests/integration/mounted_fs.hpp"

namespace portalfs::testutil {
namespace {

constexpr int kRounds = 100;  // races show up as a failure in some round, not every one

class Coherence : public ::testing::Test {
 protected:
  void SetUp() override {
    PORTALFS_REQUIRE_MOUNT(m_);
    backing_ = m_.storage() + "/shared-dir";
    a_ = m_.add_view("a", ViewKind::data, "s", backing_);
    b_ = m_.add_view("b", ViewKind::shared_ro, "s", backing_);
  }
  [[nodiscard]] std::string in_a(const std::string& rel) const { return a_ + "/" + rel; }
  [[nodiscard]] std::string in_b(const std::string& rel) const { return b_ + "/" + rel; }

  static Err lstat_err(const std::string& path) {
    struct stat st {};
    return sys(::lstat(path.c_str(), &st));
  }
  static off_t size_of(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 ? st.st_size : -1;
  }

  MountedFs m_{fuse::Options{.entry_timeout = 60, .attr_timeout = 60}};
  std::string backing_, a_, b_;
};

TEST_F(Coherence, FreshOpenInBSeesAWriteOfTheSameSizeAtOnce) {
  write_file(in_a("f"), "round 000");
  ASSERT_EQ(read_file(in_b("f")), "round 000");  // B has it cached now
  for (int i = 1; i <= kRounds; ++i) {
    char content[16];
    std::snprintf(content, sizeof(content), "round %03d", i);
    write_file(in_a("f"), content);
    ASSERT_EQ(read_file(in_b("f")), content) << "round " << i;
  }
}

TEST_F(Coherence, FreshOpenInBSeesAWriteThatGrowsTheFileAtOnce) {
  std::string content = "x";
  write_file(in_a("f"), content);
  ASSERT_EQ(read_file(in_b("f")), content);
  for (int i = 1; i <= kRounds; ++i) {
    content += static_cast<char>('a' + i % 26);
    write_file(in_a("f"), content);
    ASSERT_EQ(read_file(in_b("f")), content) << "round " << i << " (B read a stale size)";
  }
}

TEST_F(Coherence, KeptOpenFdInBSeesAWriteThroughPread) {
  write_file(in_a("f"), "old contents");
  auto fd = open_fd(in_b("f"), O_RDONLY);
  ASSERT_TRUE(fd) << std::strerror(errno);
  ASSERT_EQ(pread_str(fd.get(), 64, 0), "old contents");  // in B's page cache now
  for (int i = 0; i < kRounds; ++i) {
    char content[16];
    std::snprintf(content, sizeof(content), "new conts %02d", i % 100);
    auto w = open_fd(in_a("f"), O_WRONLY);
    ASSERT_TRUE(w);
    ASSERT_EQ(::pwrite(w.get(), content, 12, 0), 12);
    w.reset();
    EXPECT_TRUE(eventually([&] { return pread_str(fd.get(), 64, 0) == std::string(content, 12); }))
        << "round " << i << ": B still reads " << pread_str(fd.get(), 64, 0).value_or("<error>");
  }
  fd.reset();
}

TEST_F(Coherence, TruncateInAIsSeenByB) {
  write_file(in_a("f"), std::string(100, 'z'));
  ASSERT_EQ(size_of(in_b("f")), 100);
  ASSERT_EQ(read_file(in_b("f")).size(), 100u);
  ASSERT_EQ(sys(::truncate(in_a("f").c_str(), 10)), kOk);
  EXPECT_EQ(read_file(in_b("f")), std::string(10, 'z'));
  EXPECT_EQ(size_of(in_b("f")), 10);
  ASSERT_EQ(sys(::truncate(in_a("f").c_str(), 0)), kOk);
  EXPECT_EQ(read_file(in_b("f")), "");
  EXPECT_EQ(size_of(in_b("f")), 0);
}

TEST_F(Coherence, RenameAndUnlinkInAAreSeenByB) {
  write_file(in_a("old"), "moving");
  ASSERT_EQ(lstat_err(in_b("old")), kOk);   // a positive dentry in B
  ASSERT_EQ(lstat_err(in_b("new")), Err{ENOENT});  // and a negative one
  ASSERT_EQ(sys(::rename(in_a("old").c_str(), in_a("new").c_str())), kOk);
  EXPECT_TRUE(eventually([&] { return lstat_err(in_b("old")) == Err{ENOENT}; }));
  EXPECT_TRUE(eventually([&] { return lstat_err(in_b("new")) == kOk; }));
  EXPECT_EQ(read_file(in_b("new")), "moving");

  ASSERT_EQ(sys(::unlink(in_a("new").c_str())), kOk);
  EXPECT_TRUE(eventually([&] { return lstat_err(in_b("new")) == Err{ENOENT}; }));
  auto names = list_dir(b_);
  EXPECT_EQ(names, (std::vector<std::string>{".", ".."}));
}

TEST_F(Coherence, CreateInAOfANameBLookedUpNegativelyIsSeenByB) {
  ASSERT_EQ(lstat_err(in_b("n")), Err{ENOENT});
  write_file(in_a("n"), "born");
  EXPECT_TRUE(eventually([&] { return lstat_err(in_b("n")) == kOk; }));
  EXPECT_EQ(read_file(in_b("n")), "born");

  ASSERT_EQ(lstat_err(in_b("d")), Err{ENOENT});
  ASSERT_EQ(sys(::mkdir(in_a("d").c_str(), 0755)), kOk);
  EXPECT_TRUE(eventually([&] { return lstat_err(in_b("d")) == kOk; }));
  ASSERT_EQ(lstat_err(in_b("d/inner")), Err{ENOENT});
  write_file(in_a("d/inner"), "deeper");
  EXPECT_TRUE(eventually([&] { return lstat_err(in_b("d/inner")) == kOk; }));
}

// Listings are cached by the kernel (cache_readdir): B's cached listing must start over when
// A changes the directory.
TEST_F(Coherence, ListingsInBFollowCreatesRenamesAndUnlinksInA) {
  using Names = std::vector<std::string>;
  write_file(in_a("x"), "1");
  ASSERT_EQ(list_dir(b_), (Names{".", "..", "x"}));
  ASSERT_EQ(list_dir(b_), (Names{".", "..", "x"}));  // now from the kernel's cache
  write_file(in_a("y"), "2");
  EXPECT_TRUE(eventually([&] { return list_dir(b_) == Names{".", "..", "x", "y"}; }))
      << "B still lists the old directory after a create in A";
  ASSERT_EQ(sys(::rename(in_a("x").c_str(), in_a("z").c_str())), kOk);
  EXPECT_TRUE(eventually([&] { return list_dir(b_) == Names{".", "..", "y", "z"}; }))
      << "B still lists the old directory after a rename in A";
  ASSERT_EQ(sys(::unlink(in_a("y").c_str())), kOk);
  EXPECT_TRUE(eventually([&] { return list_dir(b_) == Names{".", "..", "z"}; }))
      << "B still lists the old directory after an unlink in A";
}

// What the host changes behind portalfs's back shows once the kernel's timeouts run out:
// names and listings of shared views after entry_timeout / attr_timeout, of data views
// after data_timeout (here both short).
TEST(CoherenceWithTheHost, HostChangesShowInListingsAndLookupsAfterTheTimeouts) {
  MountedFs m{fuse::Options{.entry_timeout = 0.5, .attr_timeout = 0.5, .data_timeout = 1}};
  PORTALFS_REQUIRE_MOUNT(m);
  const std::string data = m.add_view("a", ViewKind::data, "d");
  const std::string data_disk = m.views().back().backing;
  const std::string shared = m.add_view("a", ViewKind::shared_squash, "s");
  const std::string shared_disk = m.views().back().backing;
  for (const auto& [view, disk] : {std::pair{data, data_disk}, std::pair{shared, shared_disk}}) {
    using Names = std::vector<std::string>;
    // In a directory below the view's root (the root's own attributes are the synthetic
    // parent's business).
    ASSERT_EQ(sys(::mkdir((view + "/sub").c_str(), 0755)), kOk);
    const std::string dir = view + "/sub";
    ASSERT_EQ(list_dir(dir), (Names{".", ".."}));
    struct stat st {};
    ASSERT_NE(::lstat((dir + "/late").c_str(), &st), 0);  // a negative entry
    write_file(disk + "/sub/late", "from the host");
    // The name first: a listing (readdirplus) would bring it in.
    EXPECT_TRUE(eventually([&] { return ::lstat((dir + "/late").c_str(), &st) == 0; },
                           std::chrono::milliseconds(5000)))
        << view << ": the name never showed";
    EXPECT_TRUE(eventually([&] { return list_dir(dir) == Names{".", "..", "late"}; },
                           std::chrono::milliseconds(5000)))
        << view << ": the listing never showed the host's file";
  }
}

TEST_F(Coherence, AttributeChangesInAAreSeenByB) {
  write_file(in_a("f"), "attrs");
  struct stat st {};
  ASSERT_TRUE(Stat(in_b("f"), &st));
  ASSERT_EQ(sys(::chmod(in_a("f").c_str(), 0600)), kOk);
  ASSERT_TRUE(Stat(in_b("f"), &st));
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  const timespec t[2] = {{0, UTIME_OMIT}, {1234567, 0}};
  ASSERT_EQ(sys(::utimensat(AT_FDCWD, in_a("f").c_str(), t, 0)), kOk);
  ASSERT_TRUE(Stat(in_b("f"), &st));
  EXPECT_EQ(st.st_mtim.tv_sec, 1234567);
  ASSERT_EQ(sys(::link(in_a("f").c_str(), in_a("g").c_str())), kOk);
  ASSERT_TRUE(Stat(in_b("f"), &st));
  EXPECT_EQ(st.st_nlink, 2u);
}

// A directory two views show keeps its attribute timeout (60 s here), unlike a file: a path
// walk through it asks nothing. What view A changes in it reaches view B through the daemon's
// invalidations, at once, not at the timeout.
void expect_directory_changes_reach(const std::string& a, const std::string& b) {
  ASSERT_EQ(sys(::mkdir((a + "/d").c_str(), 0755)), kOk);
  struct stat st {};
  ASSERT_TRUE(Stat(b + "/d", &st));  // B knows it now: the directory has a sibling
  ASSERT_EQ(sys(::chmod((a + "/d").c_str(), 0750)), kOk);
  EXPECT_TRUE(eventually([&] { return ::stat((b + "/d").c_str(), &st) == 0 && (st.st_mode & 07777) == 0750; }))
      << "B still shows mode " << std::oct << (st.st_mode & 07777);
  ASSERT_EQ(sys(::mkdir((a + "/d/sub").c_str(), 0755)), kOk);
  EXPECT_TRUE(eventually([&] { return ::stat((b + "/d").c_str(), &st) == 0 && st.st_nlink == 3; }))
      << "B still shows " << st.st_nlink << " links";
  write_file(a + "/d/f", "x");
  EXPECT_TRUE(eventually([&] { return list_dir(b + "/d").size() == 4; })) << "B lists d without f";
}

TEST_F(Coherence, DirectoryChangesInAReachBThroughInvalidations) { expect_directory_changes_reach(a_, b_); }

// The same with change events off (no echo through B's mount refreshes B): the daemon's
// invalidations alone.
TEST(CoherenceWithoutEvents, DirectoryChangesInAReachBThroughInvalidations) {
  MountedFs m{fuse::Options{.entry_timeout = 60, .attr_timeout = 60, .events = false}};
  PORTALFS_REQUIRE_MOUNT(m);
  const std::string backing = m.storage() + "/shared-dir";
  const std::string a = m.add_view("a", ViewKind::data, "s", backing);
  const std::string b = m.add_view("b", ViewKind::shared_ro, "s", backing);
  expect_directory_changes_reach(a, b);
}

// A file two views show is served without the page cache in the shared view (direct_io),
// and shared mmap works there too (FUSE_DIRECT_IO_ALLOW_MMAP, session_io.hpp): the mapping
// goes through that view's page cache. In the data view it passes through to the backing
// file (passthrough.hpp), and a store through that mapping is what B reads at once; a
// mapping made in B afterwards maps what is on disk then.
TEST_F(Coherence, SharedMmapWorksInTheDataViewAndInTheSharedView) {
  write_file(in_a("solo"), "only A looked this up");
  auto solo = open_fd(in_a("solo"), O_RDWR);
  ASSERT_TRUE(solo);
  void* p = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, solo.get(), 0);
  ASSERT_NE(p, MAP_FAILED) << std::strerror(errno);
  EXPECT_EQ(std::string(static_cast<const char*>(p), 4), "only");
  ::munmap(p, 4096);

  write_file(in_a("both"), "both views show this");
  ASSERT_EQ(read_file(in_b("both")), "both views show this");
  auto fd = open_fd(in_a("both"), O_RDWR);
  ASSERT_TRUE(fd);
  p = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  ASSERT_NE(p, MAP_FAILED) << std::strerror(errno);
  std::memcpy(p, "BOTH", 4);
  ASSERT_EQ(::msync(p, 4096, MS_SYNC), 0) << std::strerror(errno);
  EXPECT_EQ(read_file(in_b("both")), "BOTH views show this");
  ::munmap(p, 4096);

  auto in_b_fd = open_fd(in_b("both"), O_RDONLY);
  ASSERT_TRUE(in_b_fd);
  p = ::mmap(nullptr, 4096, PROT_READ, MAP_SHARED, in_b_fd.get(), 0);
  ASSERT_NE(p, MAP_FAILED) << std::strerror(errno);
  EXPECT_EQ(std::string(static_cast<const char*>(p), 20), "BOTH views show this");
  ::munmap(p, 4096);
  p = ::mmap(nullptr, 4096, PROT_READ, MAP_PRIVATE, in_b_fd.get(), 0);
  ASSERT_NE(p, MAP_FAILED) << std::strerror(errno);
  EXPECT_EQ(std::string(static_cast<const char*>(p), 4), "BOTH");
  ::munmap(p, 4096);
}

// What a mapping kept in the shared view sees of writes made through the data view's
// passthrough file (which the daemon never sees): nothing drops its pages at once, but the
// next stat in B finds a new mtime and drops them (FUSE_AUTO_INVAL_DATA), as a fresh mmap does.
TEST_F(Coherence, AMappingInTheSharedViewCatchesUpWithTheDataViewAtItsNextStat) {
  write_file(in_a("f"), std::string(4096, '.'));
  ASSERT_EQ(read_file(in_b("f")), std::string(4096, '.'));
  auto in_b_fd = open_fd(in_b("f"), O_RDONLY);
  ASSERT_TRUE(in_b_fd);
  void* p = ::mmap(nullptr, 4096, PROT_READ, MAP_SHARED, in_b_fd.get(), 0);
  ASSERT_NE(p, MAP_FAILED) << std::strerror(errno);
  ASSERT_EQ(std::string(static_cast<const char*>(p), 4), "....");
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // a later mtime
  auto in_a_fd = open_fd(in_a("f"), O_WRONLY);
  ASSERT_TRUE(in_a_fd);
  ASSERT_EQ(::pwrite(in_a_fd.get(), "new!", 4, 0), 4);
  const std::string before_stat(static_cast<const char*>(p), 4);
  struct stat st {};
  ASSERT_TRUE(Stat(in_b("f"), &st));
  EXPECT_EQ(std::string(static_cast<const char*>(p), 4), "new!") << "before the stat: " << before_stat;
  ::munmap(p, 4096);
}

// Two read-write shared views of one directory (apps a and b): both serve the file with
// direct_io, and a MAP_SHARED store in one view, once written back (msync), is what the
// other view reads and maps; a mapping kept open in either view sees the other's writes (the
// daemon drops the other view's pages on every write it serves).
class SharedMmap : public ::testing::Test {
 protected:
  void SetUp() override {
    PORTALFS_REQUIRE_MOUNT(m_);
    backing_ = m_.storage() + "/share";
    a_ = m_.add_view("a", ViewKind::shared_squash, "s", backing_);
    b_ = m_.add_view("b", ViewKind::shared_squash, "s", backing_);
  }
  // The first `n` bytes a mapping shows.
  static std::string mapped(const void* p, size_t n) { return {static_cast<const char*>(p), n}; }

  MountedFs m_{fuse::Options{.entry_timeout = 60, .attr_timeout = 60}};
  std::string backing_, a_, b_;
};

TEST_F(SharedMmap, AStoreInOneViewIsReadAndMappedInTheOther) {
  write_file(a_ + "/db", std::string(8192, '.'));
  ASSERT_EQ(read_file(b_ + "/db"), std::string(8192, '.'));  // both views know it now
  auto in_a = open_fd(a_ + "/db", O_RDWR);
  auto in_b = open_fd(b_ + "/db", O_RDWR);
  ASSERT_TRUE(in_a);
  ASSERT_TRUE(in_b);
  void* pa = ::mmap(nullptr, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, in_a.get(), 0);
  ASSERT_NE(pa, MAP_FAILED) << std::strerror(errno);
  void* pb = ::mmap(nullptr, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, in_b.get(), 0);
  ASSERT_NE(pb, MAP_FAILED) << std::strerror(errno);
  ASSERT_EQ(mapped(pb, 4), "....");  // B's mapping holds the page now

  std::memcpy(static_cast<char*>(pa) + 4096, "from A", 6);
  ASSERT_EQ(::msync(pa, 8192, MS_SYNC), 0) << std::strerror(errno);
  EXPECT_EQ(pread_str(in_b.get(), 6, 4096), "from A");
  EXPECT_EQ(read_file(backing_ + "/db").substr(4096, 6), "from A");
  EXPECT_TRUE(eventually([&] { return mapped(static_cast<char*>(pb) + 4096, 6) == "from A"; }));

  std::memcpy(pb, "from B", 6);
  ASSERT_EQ(::msync(pb, 8192, MS_SYNC), 0) << std::strerror(errno);
  EXPECT_EQ(pread_str(in_a.get(), 6, 0), "from B");
  EXPECT_TRUE(eventually([&] { return mapped(pa, 6) == "from B"; }));

  // A plain write in B reaches A's mapping too.
  ASSERT_EQ(::pwrite(in_b.get(), "written", 7, 100), 7);
  EXPECT_TRUE(eventually([&] { return mapped(static_cast<char*>(pa) + 100, 7) == "written"; }));
  ::munmap(pa, 8192);
  ::munmap(pb, 8192);
}

}  // namespace
}  // namespace portalfs::testutil
