// SPDX-License-Identifier: MIT
// FUSE over io_uring (fuse/uring.hpp): with the kernel's enable_uring on, the mount is served
// from ring entries, and must answer as over /dev/fuse: every op, passthrough opens, many
// concurrent callers (no reply lost), and an unmount while requests are in flight ends.
// Every test checks the ring's own request count, which /dev/fuse never raises.
//
// enable_uring is the fuse module's, for every new mount on the machine: a test sets it to Y
// only until its mount has done INIT (a connection that took io_uring keeps it), and puts the
// previous value back at once.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/unique_fd.hpp"
#include "fuse/uring.hpp"
#include "tests/integration/fs_helpers.hpp"
#include "tests/integration/mounted_fs.hpp"

namespace portalfs::testutil {
namespace {

constexpr const char* kParam = "/sys/module/fuse/parameters/enable_uring";
constexpr const char* kLock = "/run/lock/portalfs-enable-uring.lock";

// Sets enable_uring to Y for its lifetime, then back to what it was. Holds a lock file the
// while (bench/run --uring takes it too): two tests of this suite run in parallel would
// otherwise read each other's Y as the value to put back.
class EnableUring {
 public:
  EnableUring() : lock_(::open(kLock, O_CREAT | O_RDWR | O_CLOEXEC, 0600)) {
    if (!lock_ || ::flock(lock_.get(), LOCK_EX) != 0) return;
    old_ = fuse::uring_module_param();
    if (!old_.empty()) ok_ = write("Y");
  }
  ~EnableUring() {
    if (ok_) write(old_);
  }
  EnableUring(const EnableUring&) = delete;
  EnableUring& operator=(const EnableUring&) = delete;
  [[nodiscard]] bool ok() const { return ok_; }

 private:
  static bool write(const std::string& v) {
    std::ofstream out(kParam);
    out << v << std::flush;
    return static_cast<bool>(out);
  }
  common::UniqueFd lock_;  // released after the destructor's body: the value is back first
  std::string old_;
  bool ok_ = false;
};

// A mount made while enable_uring is Y (INIT is done when MountedFs returns: it stats the
// mount's root).
std::unique_ptr<MountedFs> mount_with_uring(fuse::Options options = {}) {
  EnableUring on;
  if (!on.ok()) return nullptr;
  return std::make_unique<MountedFs>(options);
}

class Uring : public ::testing::Test {
 protected:
  void SetUp() override {
    if (fuse::uring_module_param().empty()) {
      PORTALFS_SKIP_OR_FAIL("this kernel has no FUSE over io_uring (no " + std::string(kParam) + ")");
    }
    m_ = mount_with_uring();
    if (!m_) GTEST_FAIL() << "cannot set " << kParam << " (not root?)";
    PORTALFS_REQUIRE_MOUNT(*m_);
    data_ = m_->add_view("a", ViewKind::data, "d");
    share_ = m_->add_view("a", ViewKind::shared_squash, "s");
    // The kernel switches to the ring once every queue has an entry; until then requests
    // still come through /dev/fuse.
    ASSERT_TRUE(eventually(
        [&] {
          struct stat st {};
          ::stat((data_ + "/").c_str(), &st);
          return ring() > 0;
        },
        std::chrono::milliseconds(5000)))
        << "no request came over the ring";
    ASSERT_EQ(m_->fs().session_io().transport(), "io_uring");
  }
  uint64_t ring() { return m_->fs().session_io().uring_requests(); }

  std::unique_ptr<MountedFs> m_;
  std::string data_, share_;
};

TEST_F(Uring, AnswersEveryOpOverTheRing) {
  const uint64_t before = ring();
  for (const std::string& dir : {data_, share_}) {
    SCOPED_TRACE(dir);
    struct stat st {};
    EXPECT_EQ(sys(::stat((dir + "/missing").c_str(), &st)), Err{ENOENT});
    ASSERT_EQ(sys(::mkdir((dir + "/sub").c_str(), 0755)), kOk);
    {
      auto fd = open_fd(dir + "/sub/f", O_CREAT | O_EXCL | O_RDWR, 0640);
      ASSERT_TRUE(fd);
      ASSERT_TRUE(write_all(fd.get(), "hello over io_uring"));
      EXPECT_EQ(pread_str(fd.get(), 100, 6), "over io_uring");
      // A write larger than a page and a read of it back (the payload buffer, both ways).
      const std::string big(300000, 'b');
      ASSERT_EQ(::pwrite(fd.get(), big.data(), big.size(), 1000), static_cast<ssize_t>(big.size()));
      EXPECT_EQ(pread_str(fd.get(), big.size(), 1000), big);
    }
    ASSERT_TRUE(Stat(dir + "/sub/f", &st));
    EXPECT_EQ(st.st_size, 301000);
    EXPECT_EQ(st.st_mode & 07777, 0640u);
    EXPECT_EQ(list_dir(dir + "/sub"), (std::vector<std::string>{".", "..", "f"}));
    ASSERT_EQ(sys(::rename((dir + "/sub/f").c_str(), (dir + "/sub/g").c_str())), kOk);
    EXPECT_EQ(list_dir(dir + "/sub"), (std::vector<std::string>{".", "..", "g"}));
    EXPECT_EQ(read_file(dir + "/sub/g").substr(0, 5), "hello");
    EXPECT_EQ(sys(::unlink((dir + "/sub/f").c_str())), Err{ENOENT});
    ASSERT_EQ(sys(::unlink((dir + "/sub/g").c_str())), kOk);
    EXPECT_EQ(sys(::rmdir((dir + "/sub").c_str())), kOk);
    EXPECT_EQ(sys(::stat((dir + "/sub").c_str(), &st)), Err{ENOENT});
  }
  // Each of the ~20 calls per view above is at least one request; /dev/fuse counts none.
  EXPECT_GE(ring() - before, 40u);
}

TEST_F(Uring, PassthroughOpensWorkOverTheRing) {
  if (!m_->fs().passthrough().active()) GTEST_FAIL() << "this kernel has no FUSE passthrough";
  write_file(data_ + "/p", "passed through");
  const uint64_t before = ring();
  {
    auto fd = open_fd(data_ + "/p", O_RDWR);
    ASSERT_TRUE(fd);
    EXPECT_EQ(m_->fs().stats().passthrough_files, 1u) << "the open's reply carried no backing id";
    EXPECT_EQ(pread_str(fd.get(), 100, 0), "passed through");
    ASSERT_EQ(::pwrite(fd.get(), "PASSED", 6, 0), 6);
  }
  EXPECT_GT(ring(), before) << "the open did not come over the ring";
  EXPECT_EQ(read_file(m_->views()[0].backing + "/p"), "PASSED through");
}

TEST_F(Uring, ManyConcurrentCallersAllGetTheirReplies) {
  constexpr int kThreads = 8;
  constexpr int kRounds = 150;
  const uint64_t before = ring();
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::string dir = (t % 2 ? share_ : data_) + "/t" + std::to_string(t);
      if (::mkdir(dir.c_str(), 0755) != 0) {
        ++failures;
        return;
      }
      for (int i = 0; i < kRounds; ++i) {
        const std::string f = dir + "/f" + std::to_string(i);
        const std::string body = f + " body";
        int fd = ::open(f.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
        if (fd < 0) {
          ++failures;
          continue;
        }
        char back[256] = {};
        if (::write(fd, body.data(), body.size()) != static_cast<ssize_t>(body.size()) ||
            ::pread(fd, back, sizeof back, 0) != static_cast<ssize_t>(body.size()) || body != back) {
          ++failures;
        }
        ::close(fd);
        struct stat st {};
        if (::stat(f.c_str(), &st) != 0 || st.st_size != static_cast<off_t>(body.size())) ++failures;
        if (i % 2 && ::unlink(f.c_str()) != 0) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(list_dir((t % 2 ? share_ : data_) + "/t" + std::to_string(t)).size(), 2u + kRounds / 2);
  }
  EXPECT_GE(ring() - before, static_cast<uint64_t>(kThreads * kRounds * 4));
}

TEST_F(Uring, UnmountWhileRequestsAreInFlightEnds) {
  std::atomic<bool> stop{false};
  std::atomic<long> done{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      const std::string f = data_ + "/busy" + std::to_string(t);
      while (!stop.load()) {
        // Paths only, no fd kept: the lazy unmount completes once the calls in flight end.
        int fd = ::open(f.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
        if (fd >= 0) {
          (void)!::write(fd, "x", 1);
          ::close(fd);
        }
        struct stat st {};
        ::stat(f.c_str(), &st);
        ++done;
      }
    });
  }
  ASSERT_TRUE(eventually([&] { return done.load() > 200; }, std::chrono::milliseconds(10000)));
  const uint64_t served = ring();
  EXPECT_GT(served, 0u);
  const auto t0 = std::chrono::steady_clock::now();
  m_.reset();  // unmounts (a hang past 10 s fails in MountedFs) and joins the ring's threads
  const auto took = std::chrono::steady_clock::now() - t0;
  stop = true;
  for (auto& t : threads) t.join();
  EXPECT_LT(took, std::chrono::seconds(10));
}

TEST_F(Uring, NoIoUringKeepsEveryRequestOnDevFuse) {
  auto off = mount_with_uring(fuse::Options{.io_uring = false});
  ASSERT_TRUE(off);
  PORTALFS_REQUIRE_MOUNT(*off);
  const std::string v = off->add_view("a", ViewKind::data, "d");
  write_file(v + "/f", "on /dev/fuse");
  EXPECT_EQ(read_file(v + "/f"), "on /dev/fuse");
  EXPECT_EQ(off->fs().session_io().transport(), "/dev/fuse");
  EXPECT_EQ(off->fs().session_io().uring_requests(), 0u);
}

}  // namespace
}  // namespace portalfs::testutil
