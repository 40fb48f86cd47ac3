// SPDX-License-Identifier: MIT
// Kernel passthrough of data views (fuse/passthrough.hpp): an open file of a data view is
// served by its backing file in the kernel. What that must keep true: every open sees every
// other open's bytes, whatever its access mode and flags; the backing is dropped with the last
// close; shared views pass reads and mmaps through but serve writes (their grants can narrow
// under open files); and the mount works the same with passthrough off.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "fuse/backing_fs.hpp"
#include "tests/integration/fs_helpers.hpp"
#include "tests/integration/mounted_fs.hpp"

namespace portalfs::testutil {
namespace {

// Linux 6.9 has FUSE passthrough; the machines this runs on have newer kernels.
bool kernel_has_passthrough() {
  utsname u{};
  ::uname(&u);
  int major = 0, minor = 0;
  std::sscanf(u.release, "%d.%d", &major, &minor);
  return major > 6 || (major == 6 && minor >= 9);
}

class Passthrough : public ::testing::Test {
 protected:
  void SetUp() override {
    PORTALFS_REQUIRE_MOUNT(m_);
    data_ = m_.add_view("a", ViewKind::data, "d");
    data_disk_ = m_.views().back().backing;
    share_ = m_.add_view("a", ViewKind::shared_squash, "s");
  }
  [[nodiscard]] size_t backings() { return m_.fs().stats().passthrough_files; }
  // The kernel sends RELEASE after close() returns: wait for the count to settle.
  bool backings_become(size_t n) {
    return eventually([&] { return backings() == n; }, std::chrono::milliseconds(3000));
  }

  MountedFs m_;
  std::string data_, data_disk_, share_;
};

TEST_F(Passthrough, IsOnWhereTheKernelHasIt) {
  EXPECT_EQ(m_.fs().passthrough().active(), kernel_has_passthrough());
}

TEST_F(Passthrough, OffWhenTheOptionsSaySo) {
  MountedFs off{fuse::Options{.passthrough = false}};
  PORTALFS_REQUIRE_MOUNT(off);
  const std::string v = off.add_view("a", ViewKind::data, "d");
  write_file(v + "/f", "served");
  auto fd = open_fd(v + "/f", O_RDWR);
  ASSERT_TRUE(fd);
  EXPECT_FALSE(off.fs().passthrough().active());
  EXPECT_EQ(off.fs().stats().passthrough_files, 0u);
  EXPECT_EQ(pread_str(fd.get(), 100, 0), "served");
}

TEST_F(Passthrough, ADataFileHasOneBackingWhileOpenAndNoneAfter) {
  if (!m_.fs().passthrough().active()) GTEST_FAIL() << "this kernel has no FUSE passthrough";
  write_file(data_ + "/f", "one");
  write_file(data_ + "/g", "two");
  ASSERT_TRUE(backings_become(0));
  {
    auto f1 = open_fd(data_ + "/f", O_RDONLY);
    auto f2 = open_fd(data_ + "/f", O_RDWR);
    ASSERT_TRUE(f1 && f2);
    EXPECT_EQ(backings(), 1u) << "two opens of one file share one backing";
    auto g = open_fd(data_ + "/g", O_RDONLY);
    ASSERT_TRUE(g);
    EXPECT_EQ(backings(), 2u);
    f1.reset();
    EXPECT_EQ(pread_str(f2.get(), 10, 0), "one") << "the other open still passes through";
  }
  EXPECT_TRUE(backings_become(0)) << backings() << " backings left after the last close";
}

// Many first opens of one file at once (each time its last open closes, the next is a first
// open again): they must share one backing, or the kernel refuses all but one (EINVAL). The
// first registers without the table's lock, the others wait for it (passthrough.hpp).
TEST_F(Passthrough, ConcurrentFirstOpensShareOneBacking) {
  if (!m_.fs().passthrough().active()) GTEST_FAIL() << "this kernel has no FUSE passthrough";
  constexpr int kThreads = 8;
  for (int f = 0; f < 4; ++f) write_file(data_ + "/race" + std::to_string(f), "0123456789");
  std::atomic<int> failures = 0, first_errno = 0;
  std::atomic<bool> stop = false;
  std::vector<std::jthread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::string path = data_ + "/race" + std::to_string(t % 4);
      char buf[10];
      while (!stop) {
        const int fd = ::open(path.c_str(), t % 2 ? O_RDWR : O_RDONLY);
        if (fd < 0 || ::pread(fd, buf, sizeof buf, 0) != static_cast<ssize_t>(sizeof buf) ||
            std::memcmp(buf, "0123456789", sizeof buf) != 0) {
          int zero = 0;
          first_errno.compare_exchange_strong(zero, fd < 0 ? errno : EIO);
          ++failures;
        }
        if (fd >= 0) ::close(fd);
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::seconds(2));
  stop = true;
  threads.clear();
  EXPECT_EQ(failures.load(), 0) << std::strerror(first_errno.load());
  EXPECT_TRUE(backings_become(0)) << backings() << " backings left after the last close";
}

// A plain read-only open is its own backing: the daemon's read-only fd, no second,
// read-write open of the file (which, on a network file system, is a round trip more per
// open). A file the daemon may only read (immutable on disk) so passes through too; with a
// second open it could not (EPERM) and the daemon served it. The kernel's O_LARGEFILE, set in
// every open's flags, is no per-open flag (glibc's O_LARGEFILE is 0: fuse/kernel_flags.hpp).
TEST_F(Passthrough, AReadOnlyOpenIsItsOwnBacking) {
  if (!m_.fs().passthrough().active()) GTEST_FAIL() << "this kernel has no FUSE passthrough";
  write_file(data_ + "/frozen", "cold");
  ASSERT_TRUE(backings_become(0));
  const std::string disk = data_disk_ + "/frozen";
  auto set_immutable = [&](bool on) {
    auto fd = open_fd(disk, O_RDONLY);
    int flags = 0;
    if (!fd || ::ioctl(fd.get(), FS_IOC_GETFLAGS, &flags) != 0) return false;
    flags = on ? (flags | FS_IMMUTABLE_FL) : (flags & ~FS_IMMUTABLE_FL);
    return ::ioctl(fd.get(), FS_IOC_SETFLAGS, &flags) == 0;
  };
  ASSERT_TRUE(set_immutable(true)) << "the test directory's file system has no immutable flag: "
                                   << std::strerror(errno);
  {
    ASSERT_EQ(open_err(disk, O_RDWR), Err{EPERM}) << "immutable: no one may open it for writing";
    auto r = open_fd(data_ + "/frozen", O_RDONLY);
    ASSERT_TRUE(r);
    EXPECT_EQ(backings(), 1u) << "a read-only open of a file the daemon may only read does not pass through";
    EXPECT_EQ(pread_str(r.get(), 10, 0), "cold");
  }
  EXPECT_TRUE(backings_become(0));
  ASSERT_TRUE(set_immutable(false));
}

// A storage root on a FUSE file system (GlusterFS: fuse/backing_fs.hpp) turns passthrough off:
// the kernel would open each backing file again as the calling app, and the client would judge
// the app's uid. Every open is then served by the daemon, and opens of one file see each
// other's bytes.
TEST(PassthroughOverFuse, IsOffAndEveryOpenIsServed) {
  fuse::Options options;
  const auto lines = fuse::fit_to_backing(options, fuse::BackingFs{"fuse.glusterfs", true});
  EXPECT_FALSE(options.passthrough);
  EXPECT_TRUE(std::any_of(lines.begin(), lines.end(),
                          [](const std::string& l) { return l.find("no kernel passthrough") != std::string::npos; }));
  MountedFs m{options};
  PORTALFS_REQUIRE_MOUNT(m);
  EXPECT_FALSE(m.fs().passthrough().active());
  const std::string v = m.add_view("a", ViewKind::data, "d");
  const std::string disk = m.views().back().backing;
  write_file(v + "/f", "first");
  {
    auto w = open_fd(v + "/f", O_WRONLY);
    ASSERT_TRUE(w);
    auto r = open_fd(v + "/f", O_RDONLY);
    ASSERT_TRUE(r);
    EXPECT_EQ(m.fs().stats().passthrough_files, 0u);
    ASSERT_EQ(::pwrite(w.get(), "again", 5, 0), 5);
    EXPECT_EQ(pread_str(r.get(), 10, 0), "again");
    EXPECT_EQ(read_file(disk + "/f"), "again");
  }
  // Kept pages are dropped when the file changes behind the view (auto_inval_data at the
  // attribute timeout): a rewrite on the disk of the same size shows at the next read.
  write_file(v + "/g", "old bytes");
  EXPECT_EQ(read_file(v + "/g"), "old bytes");
  write_file(disk + "/g", "new bytes");
  EXPECT_TRUE(eventually([&] { return read_file(v + "/g") == "new bytes"; }, std::chrono::milliseconds(3000)))
      << read_file(v + "/g");
}

// A shared view passes reads and mmaps through to the backing file, whose page cache every
// view of the file shares, and serves writes itself: a write through one view is in another
// view's mapping at once, a store through a mapping is read through the other view at once,
// and a grant turned read-only refuses the writes of a file opened before.
TEST_F(Passthrough, ASharedViewReadsAndMapsTheBackingAndItsWritesAreServed) {
  if (!m_.fs().passthrough().active()) GTEST_FAIL() << "this kernel has no FUSE passthrough";
  const std::string backing = m_.views().back().backing;  // share_'s
  auto views = m_.views();
  views.push_back(m_.shared_view("b", "s2", backing, policy::Access::read_write));
  m_.set_views(views);
  const std::string other = m_.path(views.back());
  write_file(share_ + "/f", std::string(4096, '.'));

  auto r = open_fd(share_ + "/f", O_RDONLY);
  ASSERT_TRUE(r);
  EXPECT_EQ(backings(), 1u) << "a read-only open passes through";
  void* p = ::mmap(nullptr, 4096, PROT_READ, MAP_SHARED, r.get(), 0);
  ASSERT_NE(p, MAP_FAILED) << std::strerror(errno);

  auto w = open_fd(other + "/f", O_RDWR);
  ASSERT_TRUE(w);
  EXPECT_EQ(backings(), 2u) << "each view's inode has its backing";
  ASSERT_EQ(::pwrite(w.get(), "written", 7, 0), 7);
  EXPECT_EQ(std::string(static_cast<const char*>(p), 7), "written") << "the other view's mapping";
  EXPECT_EQ(pread_str(r.get(), 7, 0), "written");

  void* q = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, w.get(), 0);
  ASSERT_NE(q, MAP_FAILED) << std::strerror(errno);
  std::memcpy(static_cast<char*>(q) + 100, "stored", 6);
  EXPECT_EQ(pread_str(r.get(), 6, 100), "stored") << "a store, read through the other view";
  ::munmap(q, 4096);
  ::munmap(p, 4096);

  views.back().access = policy::Access::read;
  m_.set_views(views);
  EXPECT_EQ(sys(::pwrite(w.get(), "late", 4, 0)), Err{EROFS}) << "a write is the daemon's to refuse";
  EXPECT_EQ(read_file(backing + "/f").substr(0, 7), "written");
}

// What revoke --force means in a shared view: the writes of files open before fail (EIO), new
// opens find nothing (ENOENT); a file open for reading keeps reading until closed, as after a
// chmod (its reads are the backing file's: the daemon sees none to refuse).
TEST_F(Passthrough, ASharedViewRevokedWithForceFailsOpenWritesAndKeepsOpenReads) {
  if (!m_.fs().passthrough().active()) GTEST_FAIL() << "this kernel has no FUSE passthrough";
  write_file(share_ + "/f", "before");
  auto r = open_fd(share_ + "/f", O_RDONLY);
  auto w = open_fd(share_ + "/f", O_WRONLY);
  ASSERT_TRUE(r);
  ASSERT_TRUE(w);
  auto views = m_.views();
  const policy::ViewSpec revoked = views.back();
  views.pop_back();
  m_.set_views(views, {revoked});
  EXPECT_EQ(sys(::pwrite(w.get(), "after", 5, 0)), Err{EIO});
  EXPECT_EQ(pread_str(r.get(), 6, 0), "before");
  EXPECT_EQ(open_err(share_ + "/f", O_RDONLY), Err{ENOENT});
}

// The mapping is the backing file's own page cache: the host sees a store at once, with no
// msync and no writeback. A FUSE page cache would hold it until writeback.
TEST_F(Passthrough, SharedMmapOfADataFileIsTheBackingFile) {
  if (!m_.fs().passthrough().active()) GTEST_FAIL() << "this kernel has no FUSE passthrough";
  write_file(data_ + "/m", std::string(4096, '.'));
  auto fd = open_fd(data_ + "/m", O_RDWR);
  ASSERT_TRUE(fd);
  void* p = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  ASSERT_NE(p, MAP_FAILED) << std::strerror(errno);
  std::memcpy(p, "stored", 6);
  auto disk = open_fd(data_disk_ + "/m", O_RDONLY);
  EXPECT_EQ(pread_str(disk.get(), 6, 0), "stored");
  // And the other way: a write on the host shows in the mapping.
  auto disk_rw = open_fd(data_disk_ + "/m", O_WRONLY);
  ASSERT_EQ(::pwrite(disk_rw.get(), "host", 4, 100), 4);
  EXPECT_EQ(std::string(static_cast<const char*>(p) + 100, 4), "host");
  ::munmap(p, 4096);
}

// A container must not learn where its files live on the host: /proc/self/maps (and
// /proc/self/fd) name the file by its path in the view, not the backing file's.
TEST_F(Passthrough, AMappingAndAnFdShowTheViewPathNotTheBackingPath) {
  if (!m_.fs().passthrough().active()) GTEST_FAIL() << "this kernel has no FUSE passthrough";
  write_file(data_ + "/shown", std::string(4096, 'x'));
  auto fd = open_fd(data_ + "/shown", O_RDONLY);
  ASSERT_TRUE(fd);
  void* p = ::mmap(nullptr, 4096, PROT_READ, MAP_SHARED, fd.get(), 0);
  ASSERT_NE(p, MAP_FAILED) << std::strerror(errno);
  const std::string maps = read_file("/proc/self/maps");
  ::munmap(p, 4096);
  EXPECT_NE(maps.find(data_ + "/shown"), std::string::npos) << maps;
  EXPECT_EQ(maps.find(data_disk_), std::string::npos) << maps;
  char link[4096];
  const std::string proc_fd = "/proc/self/fd/" + std::to_string(fd.get());
  const ssize_t n = ::readlink(proc_fd.c_str(), link, sizeof(link));
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(link, static_cast<size_t>(n)), data_ + "/shown");
}

// A write-only first open cannot be the backing of later readers: a read-write one is.
TEST_F(Passthrough, AWriteOnlyOpenAndALaterReaderSeeTheSameBytes) {
  auto w = open_fd(data_ + "/wo", O_WRONLY | O_CREAT | O_TRUNC);
  ASSERT_TRUE(w);
  ASSERT_TRUE(write_all(w.get(), "written"));
  auto r = open_fd(data_ + "/wo", O_RDONLY);
  ASSERT_TRUE(r);
  EXPECT_EQ(pread_str(r.get(), 100, 0), "written");
  ASSERT_EQ(::pwrite(w.get(), "W", 1, 0), 1);
  EXPECT_EQ(pread_str(r.get(), 100, 0), "Written");
}

// The daemon opens a write-only file read-write when it can, to make it the backing; a file
// the caller may only write is still opened, write-only, as asked (and served by the daemon).
TEST_F(Passthrough, AFileTheCallerMayOnlyWriteOpensWriteOnly) {
  ASSERT_EQ(::chmod(data_disk_.c_str(), 0777), 0);
  write_file(data_disk_ + "/wo-only", "");
  ASSERT_EQ(::chown((data_disk_ + "/wo-only").c_str(), 1000, 1000), 0);
  ASSERT_EQ(::chmod((data_disk_ + "/wo-only").c_str(), 0200), 0);
  {
    FsIds caller(1000, 1000);
    EXPECT_EQ(open_err(data_ + "/wo-only", O_RDONLY), Err{EACCES});
    for (int extra : {0, O_CREAT}) {
      auto fd = open_fd(data_ + "/wo-only", O_WRONLY | extra);
      ASSERT_TRUE(fd) << std::strerror(errno) << (extra ? " (O_CREAT)" : "");
      ASSERT_EQ(::pwrite(fd.get(), "mine", 4, 0), 4);
    }
  }
  EXPECT_EQ(read_file(data_disk_ + "/wo-only"), "mine");
}

// A read-only first open is the backing: a later writer is served by the daemon, and every
// open, and the disk, see its bytes.
TEST_F(Passthrough, AWriterAfterAReadOnlyFirstOpenIsSeenByEveryOpen) {
  write_file(data_ + "/ro-first", "before");
  auto r = open_fd(data_ + "/ro-first", O_RDONLY);
  ASSERT_TRUE(r);
  ASSERT_EQ(pread_str(r.get(), 100, 0), "before");
  auto w = open_fd(data_ + "/ro-first", O_RDWR);
  ASSERT_TRUE(w);
  ASSERT_EQ(::pwrite(w.get(), "AFTER!", 6, 0), 6);
  EXPECT_EQ(pread_str(r.get(), 100, 0), "AFTER!");
  EXPECT_EQ(pread_str(w.get(), 100, 0), "AFTER!");
  EXPECT_EQ(read_file(data_disk_ + "/ro-first"), "AFTER!");
  ASSERT_EQ(::ftruncate(w.get(), 3), 0);
  EXPECT_EQ(pread_str(r.get(), 100, 0), "AFT");
  struct stat st {};
  ASSERT_EQ(::fstat(r.get(), &st), 0);
  EXPECT_EQ(st.st_size, 3);
}

// O_APPEND is the caller's, not the backing's: appends land at the end of what is on disk,
// also after the host wrote behind the view's back; a plain open of the same file does not
// append.
TEST_F(Passthrough, AppendsLandAtTheEndOfWhatIsOnDisk) {
  write_file(data_ + "/log", "");
  auto plain = open_fd(data_ + "/log", O_RDWR);
  auto app = open_fd(data_ + "/log", O_WRONLY | O_APPEND);
  ASSERT_TRUE(plain && app);
  ASSERT_TRUE(write_all(app.get(), "a"));
  {
    auto host = open_fd(data_disk_ + "/log", O_WRONLY | O_APPEND);
    ASSERT_TRUE(write_all(host.get(), "bbb"));
  }
  ASSERT_TRUE(write_all(app.get(), "c"));
  ASSERT_EQ(::pwrite(plain.get(), "X", 1, 0), 1);
  EXPECT_EQ(read_file(data_disk_ + "/log"), "Xbbbc");
  struct stat st {};
  ASSERT_EQ(::fstat(plain.get(), &st), 0);
  EXPECT_EQ(st.st_size, 5);
}

// An unlinked file stays readable and writable through the fds open on it, as on ext4.
TEST_F(Passthrough, UnlinkedWhileOpenStaysReadableAndWritable) {
  write_file(data_ + "/gone", "still here");
  auto fd = open_fd(data_ + "/gone", O_RDWR);
  ASSERT_TRUE(fd);
  ASSERT_EQ(::unlink((data_ + "/gone").c_str()), 0);
  EXPECT_EQ(pread_str(fd.get(), 100, 0), "still here");
  ASSERT_EQ(::pwrite(fd.get(), "STILL", 5, 0), 5);
  EXPECT_EQ(pread_str(fd.get(), 100, 0), "STILL here");
}

}  // namespace
}  // namespace portalfs::testutil
