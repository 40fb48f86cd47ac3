// SPDX-License-Identifier: MIT
// Issue #16, quotas portalfsd accounts itself: the real portalfsd and portalctl over a plain
// directory in the test's temp dir (a file system without project quotas, so `quota set`
// records limits the daemon enforces: fuse/quota_account.hpp).
//
// Every write path stops exactly at the limit with EDQUOT and keeps what was written; inodes
// are limited the same way; hard links and renames within a limit move nothing, across views
// they are EXDEV; two writers can't overshoot together; statfs in a view shows the limit; and
// usage is exact after a kill -9 and a restart (the first walk counts again).
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "tests/integration/fs_helpers.hpp"
#include "tests/integration/notes_app.hpp"

namespace portalfs::testutil {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

constexpr uint64_t kM = 1 << 20;

class DaemonQuota : public NotesApp {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(DaemonFixture::SetUp());
    ASSERT_NO_FATAL_FAILURE(start());
    ASSERT_NO_FATAL_FAILURE(install_notes());
  }

  // What the app's data dirs hold from install on (each its .portalfs-version marker: they
  // count, as they would in a project quota), read through a limit set for that: the limits
  // below are that much above round numbers, so the tests can speak in round numbers.
  void measure_base() {
    ASSERT_NO_FATAL_FAILURE(set({"notes", "1G"}));
    b0 = bytes_used("notes");
    i0 = inodes_used("notes");
  }
  uint64_t b0 = 0, i0 = 0;
  // "SIZE" + the base, as the argument of quota set.
  std::string plus_base(uint64_t n, uint64_t base) { return std::to_string(n + base); }

  // Sets a quota and checks the daemon took it as its own to account.
  void set(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {"quota", "set"};
    argv.insert(argv.end(), args.begin(), args.end());
    const auto r = ctl(argv);
    ASSERT_EQ(r.code, 0) << r.err;
    ASSERT_THAT(r.out, HasSubstr("accounted by portalfsd"));
  }
  // The usage row of `target`, once the first walk has counted it (10 s at most).
  nlohmann::json usage(const std::string& target) {
    nlohmann::json row;
    const bool counted = eventually(
        [&] {
          auto r = ctl({"usage", target, "--format", "json"});
          if (r.code != 0) return false;
          row = nlohmann::json::parse(r.out).at(0);
          return true;
        },
        10s);
    EXPECT_TRUE(counted) << ctl({"usage", target}).err;
    return row;
  }
  uint64_t bytes_used(const std::string& target) { return usage(target)["bytes_used"].get<uint64_t>(); }
  uint64_t inodes_used(const std::string& target) { return usage(target)["inodes_used"].get<uint64_t>(); }

  // Writes `chunk`-sized blocks to fd until one fails or `max` are written: the errno (0: all
  // written) and, in `done`, how many bytes were.
  static int fill(int fd, std::size_t max, std::size_t* done_out = nullptr, std::size_t chunk = 64 * 1024) {
    const std::string block(chunk, 'x');
    std::size_t done = 0;
    int err = 0;
    while (done < max) {
      const ssize_t n = ::write(fd, block.data(), std::min(chunk, max - done));
      if (n < 0) {
        err = errno;
        break;
      }
      done += static_cast<std::size_t>(n);
    }
    if (done_out) *done_out = done;
    return err;
  }
};

TEST_F(DaemonQuota, WritesAppendsFallocateAndCopiesStopExactlyAtTheLimit) {
  const std::string before(kM, 'b');
  write_file(data() + "/before.bin", before);  // there before the quota: the first walk counts it
  ASSERT_NO_FATAL_FAILURE(measure_base());
  ASSERT_NO_FATAL_FAILURE(set({"notes", plus_base(4 * kM, b0 - kM), "--inodes", plus_base(40, i0 - 1)}));
  b0 -= kM;  // before.bin was in the base
  i0 -= 1;
  EXPECT_EQ(bytes_used("notes"), b0 + kM);
  EXPECT_EQ(inodes_used("notes"), i0 + 1);

  // statfs in the views (what df in the container shows): the limit is the size, its room free.
  // (Whole blocks: the base's few bytes round the size up and the room down by one.)
  struct statvfs sv {};
  ASSERT_EQ(::statvfs(data().c_str(), &sv), 0) << std::strerror(errno);
  EXPECT_EQ(sv.f_blocks, (4 * kM + b0 + sv.f_frsize - 1) / sv.f_frsize);
  EXPECT_EQ(sv.f_bavail, 3 * kM / sv.f_frsize);
  EXPECT_EQ(sv.f_files, 40 + i0);
  EXPECT_EQ(sv.f_favail, 39u);
  ASSERT_EQ(::statvfs(cache().c_str(), &sv), 0);
  EXPECT_EQ(sv.f_blocks, (4 * kM + b0 + sv.f_frsize - 1) / sv.f_frsize);  // all its data dirs together

  // A write goes up to the limit exactly (the last one short), then EDQUOT.
  int fd = ::open((data() + "/big.bin").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  std::size_t written = 0;
  EXPECT_EQ(fill(fd, 8 * kM, &written, 100000), EDQUOT);
  EXPECT_EQ(written, 3 * kM);
  ::close(fd);
  EXPECT_EQ(fs::file_size(data() + "/big.bin"), 3 * kM);
  EXPECT_EQ(bytes_used("notes"), b0 + 4 * kM);
  // An append at the limit: EDQUOT, and nothing already written is touched.
  fd = ::open((data() + "/before.bin").c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(fill(fd, kM), EDQUOT);
  ::close(fd);
  // Rewriting bytes inside the file costs nothing, at the limit too.
  fd = ::open((data() + "/before.bin").c_str(), O_WRONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(::pwrite(fd, "b", 1, 0), 1);
  EXPECT_EQ(sys(::ftruncate(fd, 2 * kM)), Err{EDQUOT});  // growing by truncate
  ::close(fd);
  EXPECT_EQ(read_file(data() + "/before.bin"), before);
  EXPECT_EQ(read_file(data() + "/big.bin"), std::string(3 * kM, 'x'));

  // Deleting gives the room back; fallocate is all or nothing.
  ASSERT_EQ(sys(::unlink((data() + "/big.bin").c_str())), kOk);
  EXPECT_EQ(bytes_used("notes"), b0 + kM);
  fd = ::open((cache() + "/c.bin").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(sys(::fallocate(fd, 0, 0, 8 * kM)), Err{EDQUOT});
  EXPECT_EQ(fs::file_size(cache() + "/c.bin"), 0u);
  EXPECT_EQ(sys(::fallocate(fd, 0, 0, kM)), kOk);
  // Room beyond the end of the file would not be counted: refused, posix_fallocate writes zeros.
  EXPECT_EQ(sys(::fallocate(fd, FALLOC_FL_KEEP_SIZE, kM, kM)), Err{EOPNOTSUPP});
  ::close(fd);
  EXPECT_EQ(bytes_used("notes"), b0 + 2 * kM);

  // copy_file_range: two MiB fit the 2 MiB left exactly, the third gets EDQUOT.
  const int in = ::open((data() + "/before.bin").c_str(), O_RDONLY | O_CLOEXEC);
  const int out = ::open((data() + "/copy.bin").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  ASSERT_GE(in, 0);
  ASSERT_GE(out, 0);
  uint64_t copied = 0;
  for (int i = 0; i < 2; ++i) {
    loff_t off_in = 0;
    while (off_in < static_cast<loff_t>(kM)) {
      const ssize_t n = ::copy_file_range(in, &off_in, out, nullptr, kM - off_in, 0);
      ASSERT_GT(n, 0) << std::strerror(errno);
      copied += static_cast<uint64_t>(n);
    }
  }
  loff_t off_in = 0;
  EXPECT_EQ(sys(::copy_file_range(in, &off_in, out, nullptr, kM, 0)), Err{EDQUOT});
  ::close(in);
  ::close(out);
  EXPECT_EQ(copied, 2 * kM);
  EXPECT_EQ(read_file(data() + "/copy.bin"), before + before);
  EXPECT_EQ(bytes_used("notes"), b0 + 4 * kM);
  // Shrinking gives back exactly what it cut.
  ASSERT_EQ(sys(::truncate((data() + "/copy.bin").c_str(), kM / 2)), kOk);
  EXPECT_EQ(bytes_used("notes"), b0 + 2 * kM + kM / 2);
}

TEST_F(DaemonQuota, HardLinksAndRenamesWithinALimitMoveNothingAcrossViewsAreExdev) {
  write_file(data() + "/a.bin", std::string(kM, 'a'));
  write_file(data() + "/old.bin", std::string(kM / 4, 'o'));
  ASSERT_NO_FATAL_FAILURE(measure_base());
  b0 -= kM + kM / 4;
  i0 -= 2;
  ASSERT_NO_FATAL_FAILURE(set({"notes", plus_base(2 * kM, b0), "--inodes", plus_base(10, i0)}));
  ASSERT_NO_FATAL_FAILURE(set({"own_media", "1M"}));
  EXPECT_EQ(bytes_used("notes"), b0 + kM + kM / 4);
  EXPECT_EQ(inodes_used("notes"), i0 + 2);

  // A second name and a rename: same bytes, same inodes.
  EXPECT_EQ(sys(::link((data() + "/a.bin").c_str(), (data() + "/link.bin").c_str())), kOk);
  ASSERT_EQ(sys(::mkdir((data() + "/sub").c_str(), 0755)), kOk);
  EXPECT_EQ(sys(::rename((data() + "/link.bin").c_str(), (data() + "/sub/moved.bin").c_str())), kOk);
  EXPECT_EQ(bytes_used("notes"), b0 + kM + kM / 4);
  EXPECT_EQ(inodes_used("notes"), i0 + 3);  // the directory
  // Removing one of two names keeps the file counted; removing the last gives it back.
  ASSERT_EQ(sys(::unlink((data() + "/sub/moved.bin").c_str())), kOk);
  EXPECT_EQ(bytes_used("notes"), b0 + kM + kM / 4);
  // A rename that replaces a file gives the replaced one back.
  ASSERT_EQ(sys(::rename((data() + "/a.bin").c_str(), (data() + "/old.bin").c_str())), kOk);
  EXPECT_EQ(bytes_used("notes"), b0 + kM);
  EXPECT_EQ(inodes_used("notes"), i0 + 2);
  EXPECT_EQ(read_file(data() + "/old.bin"), std::string(kM, 'a'));

  // Across views (another data dir of the same app, the share): EXDEV, whatever the limits.
  EXPECT_EQ(sys(::rename((data() + "/old.bin").c_str(), (cache() + "/old.bin").c_str())), Err{EXDEV});
  EXPECT_EQ(sys(::rename((data() + "/old.bin").c_str(), (media() + "/old.bin").c_str())), Err{EXDEV});
  EXPECT_EQ(sys(::link((data() + "/old.bin").c_str(), (media() + "/l.bin").c_str())), Err{EXDEV});
  // mv then copies: into the share, 1 MiB fits its 1 MiB limit exactly; one more byte does not.
  write_file(media() + "/old.bin", read_file(data() + "/old.bin"));
  EXPECT_EQ(bytes_used("own_media"), kM);
  const int fd = ::open((media() + "/one.more").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(sys(::write(fd, "x", 1)), Err{EDQUOT});
  ::close(fd);
  EXPECT_EQ(bytes_used("notes"), b0 + kM);  // the app's limit counts its data dirs only
}

TEST_F(DaemonQuota, InodeLimitStopsEveryKindOfNewEntry) {
  ASSERT_NO_FATAL_FAILURE(measure_base());
  ASSERT_NO_FATAL_FAILURE(set({"notes", "1G", "--inodes", plus_base(5, i0)}));
  EXPECT_EQ(open_err(data() + "/f1", O_CREAT | O_WRONLY | O_CLOEXEC), kOk);
  EXPECT_EQ(sys(::mkdir((data() + "/d").c_str(), 0755)), kOk);
  EXPECT_EQ(sys(::symlink("f1", (data() + "/s").c_str())), kOk);
  EXPECT_EQ(sys(::mknod((cache() + "/node").c_str(), S_IFREG | 0644, 0)), kOk);
  EXPECT_EQ(open_err(cache() + "/f2", O_CREAT | O_WRONLY | O_CLOEXEC), kOk);
  EXPECT_EQ(inodes_used("notes"), i0 + 5);
  // The sixth, of each kind: EDQUOT, and nothing is made.
  EXPECT_EQ(open_err(data() + "/f3", O_CREAT | O_WRONLY | O_CLOEXEC), Err{EDQUOT});
  EXPECT_EQ(sys(::mkdir((data() + "/d2").c_str(), 0755)), Err{EDQUOT});
  EXPECT_EQ(sys(::symlink("f1", (data() + "/s2").c_str())), Err{EDQUOT});
  EXPECT_EQ(sys(::mknod((data() + "/n").c_str(), S_IFREG | 0644, 0)), Err{EDQUOT});
  EXPECT_FALSE(fs::exists(data() + "/f3"));
  EXPECT_FALSE(fs::exists(data() + "/d2"));
  // A hard link is no new inode: it is made.
  EXPECT_EQ(sys(::link((data() + "/f1").c_str(), (data() + "/f1.link").c_str())), kOk);
  struct statvfs sv {};
  ASSERT_EQ(::statvfs(data().c_str(), &sv), 0);
  EXPECT_EQ(sv.f_files, i0 + 5);
  EXPECT_EQ(sv.f_ffree, 0u);
  // rmdir and unlink give inodes back.
  ASSERT_EQ(sys(::rmdir((data() + "/d").c_str())), kOk);
  ASSERT_EQ(sys(::unlink((data() + "/s").c_str())), kOk);
  EXPECT_EQ(inodes_used("notes"), i0 + 3);
  EXPECT_EQ(sys(::mkdir((data() + "/d2").c_str(), 0755)), kOk);
}

TEST_F(DaemonQuota, TwoWritersDoNotOvershootTogether) {
  ASSERT_NO_FATAL_FAILURE(measure_base());
  ASSERT_NO_FATAL_FAILURE(set({"notes", plus_base(8 * kM, b0)}));
  std::atomic<uint64_t> total{0};
  auto writer = [&](const std::string& path) {
    const int fd = ::open(path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0);
    std::size_t done = 0;
    EXPECT_EQ(fill(fd, 16 * kM, &done, 4096 * 3 + 7), EDQUOT);
    total += done;
    ::close(fd);
  };
  std::thread a(writer, data() + "/a.bin");
  std::thread b(writer, cache() + "/b.bin");
  a.join();
  b.join();
  EXPECT_EQ(total.load(), 8 * kM);
  EXPECT_EQ(fs::file_size(data() + "/a.bin") + fs::file_size(cache() + "/b.bin"), 8 * kM);
  EXPECT_EQ(bytes_used("notes"), b0 + 8 * kM);
}

TEST_F(DaemonQuota, UsageIsExactAfterAKillAndRestart) {
  ASSERT_NO_FATAL_FAILURE(measure_base());
  ASSERT_NO_FATAL_FAILURE(set({"notes", plus_base(16 * kM, b0), "--inodes", "100"}));
  write_file(data() + "/a.bin", std::string(3 * kM + 5, 'a'));
  write_file(cache() + "/b.bin", std::string(kM, 'b'));
  ASSERT_EQ(sys(::mkdir((data() + "/sub").c_str(), 0755)), kOk);
  write_file(data() + "/sub/c", "ccc");
  ASSERT_EQ(sys(::link((data() + "/a.bin").c_str(), (data() + "/sub/a.link").c_str())), kOk);
  const auto before = usage("notes");
  EXPECT_EQ(before["bytes_used"], b0 + 4 * kM + 8);
  EXPECT_EQ(before["inodes_used"], i0 + 4);
  ASSERT_EQ(daemon_->stop(SIGKILL), 128 + SIGKILL);
  ::umount2(mnt().c_str(), MNT_DETACH);
  ASSERT_NO_FATAL_FAILURE(start());
  const auto after = usage("notes");
  EXPECT_EQ(after["bytes_used"], before["bytes_used"]);
  EXPECT_EQ(after["inodes_used"], before["inodes_used"]);
  EXPECT_EQ(after["bytes_limit"], b0 + 16 * kM);
  EXPECT_EQ(after["enforced_by"], "daemon");
  // And it is enforced from the new count on.
  const int fd = ::open((data() + "/fill.bin").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  std::size_t done = 0;
  EXPECT_EQ(fill(fd, 32 * kM, &done), EDQUOT);
  ::close(fd);
  EXPECT_EQ(done, 12 * kM - 8);
  const auto status = ctl({"status"}).out;
  EXPECT_THAT(status, HasSubstr("quota: accounted by portalfsd, its limited views served without passthrough (1 set;"));
  EXPECT_THAT(status, HasSubstr("filesystem.quota_count: done\n"));
}

TEST_F(DaemonQuota, ClearLiftsTheLimitAndBadInputChangesNothing) {
  ASSERT_NO_FATAL_FAILURE(set({"notes", "1M"}));
  const std::string state = state_files(dir_ / "state");  // state.json and its journal
  EXPECT_THAT(state, ::testing::AnyOf(HasSubstr("\"enforced_by\": \"daemon\""), HasSubstr("\"enforced_by\":\"daemon\"")));
  for (const auto& bad : std::vector<std::vector<std::string>>{{"quota", "set", "notes", "10X"},
                                                                {"quota", "set", "notes", "0"},
                                                                {"quota", "set", "nobody", "1M"}}) {
    const auto r = ctl(bad);
    EXPECT_EQ(r.code, 2) << r.out << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_EQ(state_files(dir_ / "state"), state);
  }
  ASSERT_EQ(ctl({"quota", "clear", "notes"}).code, 0);
  write_file(data() + "/a.bin", std::string(2 * kM, 'a'));
  EXPECT_EQ(fs::file_size(data() + "/a.bin"), 2 * kM);
  struct statvfs sv {};
  ASSERT_EQ(::statvfs(data().c_str(), &sv), 0);
  EXPECT_NE(sv.f_blocks * sv.f_frsize, kM);
}

}  // namespace
}  // namespace portalfs::testutil
