// SPDX-License-Identifier: MIT
// Issue #16, quotas enforced by btrfs qgroups: the real portalfsd and portalctl over a
// loop-mounted btrfs image in the test's temp dir (1 GiB sparse, mkfs.btrfs; the manager turns
// qgroups on). The app's data root and the share are made as subvolumes when they are made, a
// limit is their qgroup's, and the views keep passthrough while the kernel enforces it.
// Needs loop devices and mkfs.btrfs (scripts/deps): without them it fails, never skips.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <poll.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "tests/integration/fs_helpers.hpp"
#include "tests/integration/loop_disk.hpp"

namespace portalfs::testutil {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;

constexpr uint64_t kM = 1 << 20;

class QuotaOnBtrfs : public LoopDisk {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(LoopDisk::SetUp());
    ASSERT_NO_FATAL_FAILURE(make_disk("1G", "mkfs.btrfs -q -f", ""));
    ASSERT_NO_FATAL_FAILURE(start());
    ASSERT_NO_FATAL_FAILURE(install_notes());
  }

  nlohmann::json usage(const std::string& target) {
    auto r = ctl({"usage", target, "--format", "json"});
    EXPECT_EQ(r.code, 0) << r.err;
    auto rows = nlohmann::json::parse(r.out);
    EXPECT_EQ(rows.size(), 1u);
    return rows.at(0);
  }
  size_t passthrough_files() {
    auto r = ctl({"status", "--format", "json"});
    EXPECT_EQ(r.code, 0) << r.err;
    return nlohmann::json::parse(r.out)["filesystem"].value("passthrough_files", size_t{0});
  }
  // Whether the directory is the top of a btrfs subvolume (inode 256), as the btrfs tool sees it too.
  bool subvolume(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 && st.st_ino == 256 && sh("btrfs subvolume show '" + path + "'").code == 0;
  }
  // Writes blocks of 'x' until one fails; the errno (0: `max` written).
  static int fill(int fd, std::size_t max, std::size_t chunk = 64 * 1024) {
    const std::string block(chunk, 'x');
    for (std::size_t done = 0; done < max;) {
      const ssize_t n = ::write(fd, block.data(), block.size());
      if (n < 0) return errno;
      done += static_cast<std::size_t>(n);
    }
    return 0;
  }
};

TEST_F(QuotaOnBtrfs, EveryWritePathStopsAtTheLimitWithPassthroughKept) {
  EXPECT_TRUE(subvolume(storage() + "/apps/notes"));
  EXPECT_TRUE(subvolume(storage() + "/shared/own_media"));
  const std::string before(kM, 'b');
  write_file(data() + "/before.bin", before);
  write_file(cache() + "/c.bin", "");
  write_file(data() + "/copy.bin", "");  // at the limit not even a new name fits (btrfs reserves metadata)
  auto r = ctl({"quota", "set", "notes", "8M", "--inodes", "40"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("quota set: app notes is a btrfs subvolume, whose qgroup limits bytes only"));
  r = ctl({"quota", "set", "notes", "8M"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("quota on app notes: 8M (btrfs qgroup 0/"));
  EXPECT_THAT(ctl({"status"}).out, HasSubstr("quota: btrfs qgroups of the apps' and shares' subvolumes, enforced by the kernel (1 set)"));
  auto u = usage("notes");
  EXPECT_EQ(u["enforced_by"], "btrfs");
  EXPECT_GE(u["bytes_used"].get<uint64_t>(), kM);
  EXPECT_EQ(u["bytes_limit"], 8 * kM);
  EXPECT_THAT(sh("btrfs qgroup show -r '" + storage() + "'").out, HasSubstr("8.00MiB"));

  // statfs in the views (df in the container): the limit is the size, the room is free.
  struct statvfs sv {};
  ASSERT_EQ(::statvfs(data().c_str(), &sv), 0) << std::strerror(errno);
  EXPECT_EQ(sv.f_blocks * sv.f_frsize, 8 * kM);
  EXPECT_LE(sv.f_bavail * sv.f_frsize, 7 * kM);
  ASSERT_EQ(::statvfs(cache().c_str(), &sv), 0);
  EXPECT_EQ(sv.f_blocks * sv.f_frsize, 8 * kM);  // all its data dirs together

  // A write in the limited data view goes through passthrough, up to the limit and no further.
  int fd = ::open((data() + "/big.bin").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  EXPECT_GE(passthrough_files(), 1u);
  EXPECT_EQ(fill(fd, 64 * kM), EDQUOT);
  ::close(fd);
  EXPECT_LT(fs::file_size(data() + "/big.bin"), 8 * kM);
  // An append, fallocate in the other data dir, a copy_file_range: EDQUOT too.
  fd = ::open((data() + "/before.bin").c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(fill(fd, 64 * kM), EDQUOT);
  ::close(fd);
  fd = ::open((cache() + "/c.bin").c_str(), O_WRONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(sys(::fallocate(fd, 0, 0, 64 * kM)), Err{EDQUOT});
  ::close(fd);
  // (From an offset that is not block-aligned: btrfs can't clone it, so it copies the bytes.)
  const int in = ::open((data() + "/big.bin").c_str(), O_RDONLY | O_CLOEXEC);
  const int out = ::open((data() + "/copy.bin").c_str(), O_WRONLY | O_CLOEXEC);
  ASSERT_GE(in, 0);
  ASSERT_GE(out, 0);
  loff_t off_in = 1;
  ssize_t copied = 0;
  for (int i = 0; i < 64 && copied >= 0; ++i) {
    off_in = 1;
    copied = ::copy_file_range(in, &off_in, out, nullptr, 4 * kM, 0);
  }
  EXPECT_EQ(copied < 0 ? errno : 0, EDQUOT);
  ::close(in);
  ::close(out);
  // Nothing written before is lost.
  EXPECT_EQ(read_file(data() + "/before.bin").substr(0, kM), before);
  u = usage("notes");
  EXPECT_LE(u["bytes_used"].get<uint64_t>(), 8 * kM);
  EXPECT_GE(u["bytes_percent"].get<int>(), 80);
}

// A clone (reflink) from another subvolume would be charged without the limit's check (16M
// cloned past an 8M limit, on btrfs directly): the daemon answers EXDEV, and the kernel then
// copies the bytes by writes, which stop at the limit.
TEST_F(QuotaOnBtrfs, CopyFromAnotherSubvolumeStopsAtTheLimit) {
  write_file(media() + "/src.bin", std::string(16 * kM, 's'));
  write_file(data() + "/d.txt", "d");
  ASSERT_EQ(ctl({"quota", "set", "notes", "8M"}).code, 0);
  // A rename or link between the subvolumes is EXDEV (the kernel's rule, passed on).
  EXPECT_EQ(sys(::rename((data() + "/d.txt").c_str(), (media() + "/d.txt").c_str())), Err{EXDEV});
  EXPECT_EQ(sys(::link((data() + "/d.txt").c_str(), (media() + "/d.txt").c_str())), Err{EXDEV});
  const int in = ::open((media() + "/src.bin").c_str(), O_RDONLY | O_CLOEXEC);
  const int out = ::open((data() + "/clone.bin").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  ASSERT_GE(in, 0);
  ASSERT_GE(out, 0);
  ssize_t n = 0;
  size_t total = 0;
  while ((n = ::copy_file_range(in, nullptr, out, nullptr, 16 * kM, 0)) > 0) total += static_cast<size_t>(n);
  EXPECT_EQ(n < 0 ? errno : 0, EDQUOT);
  EXPECT_LT(total, 8 * kM);
  ::close(in);
  ::close(out);
  EXPECT_LE(usage("notes")["bytes_used"].get<uint64_t>(), 8 * kM);
}

TEST_F(QuotaOnBtrfs, ShareLimitBindsTheDaemonsOwnWrites) {
  ASSERT_EQ(ctl({"quota", "set", "own_media", "2M"}).code, 0);
  const int fd = ::open((media() + "/m.bin").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(fill(fd, 16 * kM), EDQUOT);
  ::close(fd);
  EXPECT_LE(fs::file_size(media() + "/m.bin"), 2 * kM);
  struct statvfs sv {};
  ASSERT_EQ(::statvfs(media().c_str(), &sv), 0);
  EXPECT_EQ(sv.f_blocks * sv.f_frsize, 2 * kM);
  EXPECT_EQ(usage("own_media")["enforced_by"], "btrfs");
}

TEST_F(QuotaOnBtrfs, UsageIsRightAfterAKillAndRestart) {
  ASSERT_EQ(ctl({"quota", "set", "notes", "64M"}).code, 0);
  write_file(data() + "/a.bin", std::string(3 * kM, 'a'));
  write_file(cache() + "/b.bin", std::string(kM, 'b'));
  const auto before = usage("notes");
  EXPECT_GE(before["bytes_used"].get<uint64_t>(), 4 * kM);
  EXPECT_LT(before["bytes_used"].get<uint64_t>(), 5 * kM);
  ASSERT_EQ(daemon_->stop(SIGKILL), 128 + SIGKILL);
  ::umount2(mnt().c_str(), MNT_DETACH);
  ASSERT_NO_FATAL_FAILURE(start());
  const auto after = usage("notes");
  EXPECT_EQ(after["bytes_used"], before["bytes_used"]);
  EXPECT_EQ(after["bytes_limit"], 64 * kM);
  EXPECT_EQ(after["enforced_by"], "btrfs");
  // Cleared, the qgroup has no limit left and the views write on.
  ASSERT_EQ(ctl({"quota", "clear", "notes"}).code, 0);
  write_file(data() + "/c.bin", std::string(70 * kM, 'c'));
  EXPECT_EQ(fs::file_size(data() + "/c.bin"), 70 * kM);
}

// A directory made before it would have been a subvolume keeps the daemon's accounting, and
// status says so; a share can't get a trash once it is a subvolume (deletes would be EXDEV).
TEST_F(QuotaOnBtrfs, PlainDirectoryFallsBackToTheDaemon) {
  fs::create_directories(storage() + "/shared/old");
  ASSERT_EQ(ctl({"share", "create", "old"}).code, 0);
  EXPECT_FALSE(subvolume(storage() + "/shared/old"));
  auto r = ctl({"quota", "set", "old", "4M"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("accounted by portalfsd: its directory is not a btrfs subvolume"));
  EXPECT_THAT(ctl({"status"}).out, HasSubstr("; 1 accounted by portalfsd (directories made before they were subvolumes"));
  r = ctl({"share", "set", "own_media", "--trash", "30d"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("share own_media is a btrfs subvolume"));
}

// A purged app's data root is a subvolume in the trash: deleted whole (btrfs would not let it go
// as a directory tree: it is another st_dev), and its qgroup's bytes are free again.
TEST_F(QuotaOnBtrfs, APurgedSubvolumeIsDeletedFromTheTrash) {
  write_file(data() + "/a.bin", std::string(4 * kM, 'a'));
  fs::create_directories(data() + "/d/e");
  write_file(data() + "/d/e/f", "f");
  auto r = ctl({"app", "remove", "notes", "--purge"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_FALSE(fs::exists(storage() + "/apps/notes"));
  EXPECT_TRUE(eventually([&] { return fs::is_empty(storage() + "/trash"); }, 30s));
  const std::string subvolumes = sh("btrfs subvolume list '" + storage() + "'").out;
  EXPECT_THAT(subvolumes, HasSubstr("path shared/own_media"));
  EXPECT_THAT(subvolumes, Not(HasSubstr("path apps/notes")));
  EXPECT_THAT(subvolumes, Not(HasSubstr("path trash")));
}

// The app's data root is a subvolume, with an fsid of its own, and the kernel marks a btrfs
// file system only from a directory with the file system's fsid: the host watch marks it from the
// directory above. A file written on the host in the subvolume is heard in the app's view.
TEST_F(QuotaOnBtrfs, HostChangesInASubvolumeReachItsViews) {
  ASSERT_TRUE(subvolume(storage() + "/apps/notes"));
  const int watch = ::inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  ASSERT_GE(watch, 0) << std::strerror(errno);
  ASSERT_GE(::inotify_add_watch(watch, data().c_str(), IN_CREATE), 0) << std::strerror(errno);
  write_file(storage() + "/apps/notes/data/from-host.txt", "host");
  std::string heard;
  wait_until(
      [&] {
        pollfd p{watch, POLLIN, 0};
        if (::poll(&p, 1, 100) <= 0) return false;
        char buf[4096];
        const ssize_t n = ::read(watch, buf, sizeof buf);
        for (ssize_t off = 0; off < n;) {
          const auto* e = reinterpret_cast<const inotify_event*>(buf + off);
          if (e->len) heard += std::string(e->name) + " ";
          off += static_cast<ssize_t>(sizeof(inotify_event) + e->len);
        }
        return heard.find("from-host.txt") != std::string::npos;
      },
      2s);
  ::close(watch);
  EXPECT_THAT(heard, HasSubstr("from-host.txt")) << "no IN_CREATE within 2 s of a host write in the subvolume";
  EXPECT_EQ(read_file(data() + "/from-host.txt"), "host");
  EXPECT_THAT(read_file(dir_ / "daemon.log"), Not(HasSubstr("reach the views at their timeouts only")));
}

}  // namespace
}  // namespace portalfs::testutil
