// SPDX-License-Identifier: MIT
// Issue #12, the offline backing store: a storage root on a disk that is not mounted (yet, or
// any more) is never served from the directory underneath. The real portalfsd over a
// loop-mounted ext4 image: started with the disk missing, the views answer EIO, status and the
// log say so, nothing is written underneath, and mounting the disk heals the views without a
// restart; the same when the disk is unmounted (umount -l) under the running daemon.
#include <dirent.h>
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "tests/integration/fs_helpers.hpp"
#include "tests/testutil/daemon_fixture.hpp"

namespace portalfs::testutil {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

// Sh, with the admin tools on the PATH whatever the test's environment.
CommandResult sh(const std::string& script) {
  return run_command({"/bin/sh", "-c", "PATH=/usr/sbin:/usr/bin:/sbin:/bin; " + script}, 60s);
}

int errno_of(int rc) { return rc >= 0 ? 0 : errno; }

class OfflineStore : public DaemonFixture {
 protected:
  std::string image = dir_ / "disk.img";
  std::string loop;  // /dev/loopN holding the image, once attached

  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(DaemonFixture::SetUp());
    if (::access("/dev/loop-control", R_OK | W_OK) != 0) PORTALFS_SKIP_OR_FAIL("no /dev/loop-control");
    auto r = sh("truncate -s 64M '" + image + "' && mkfs.ext4 -q -F '" + image + "'");
    if (r.code != 0) PORTALFS_SKIP_OR_FAIL("cannot make an ext4 image: " + r.err);
    // An explicit loop device: mounting it again after `umount -l` gives the same super block
    // (never a second one of the same image while the first lives on in a lazy unmount).
    r = sh("losetup --find --show '" + image + "'");
    if (r.code != 0) PORTALFS_SKIP_OR_FAIL("no loop device: " + r.err);
    loop = r.out.substr(0, r.out.find('\n'));
    fs::create_directories(storage());
    ASSERT_NO_FATAL_FAILURE(mount_disk());
  }

  void TearDown() override {
    if (mounted(bind())) ::umount2(bind().c_str(), MNT_DETACH);
    DaemonFixture::TearDown();  // stops the daemon first: it holds fds on the disk
    for (int i = 0; i < 3 && mounted(storage()); ++i) {
      if (::umount2(storage().c_str(), 0) != 0) ::umount2(storage().c_str(), MNT_DETACH);
    }
    if (!loop.empty()) sh("losetup -d " + loop);
  }

  void mount_disk() {
    auto r = sh("mount " + loop + " '" + storage() + "'");
    ASSERT_EQ(r.code, 0) << r.err;
  }
  void unmount_disk(bool lazy) {
    ASSERT_EQ(::umount2(storage().c_str(), lazy ? MNT_DETACH : 0), 0) << std::strerror(errno);
    ASSERT_FALSE(mounted(storage()));
  }

  std::string view() { return mnt() + "/apps/notes/data/data"; }
  // Where a container would see the view: a bind mount of it, which pins the view root.
  std::string bind() { return dir_ / "container-data"; }

  std::string status(bool json = false) {
    auto r = json ? ctl({"status", "--format", "json"}) : ctl({"status"});
    EXPECT_EQ(r.code, 0) << r.err;
    return r.out;
  }

  // Waits until the view answers EIO to lstat, stat, open and opendir alike: the kernel
  // serves what it cached until the daemon's invalidations reach it, one inode after another
  // (an open asks the daemon, which answers EIO from the moment the store is offline; a stat
  // of a file whose invalidation has not been sent yet still succeeds).
  void expect_views_fail_with_eio() {
    const std::string file = view() + "/hello.txt";
    auto all_eio = [&] {
      struct stat st {};
      const int lstat_err = errno_of(::lstat(view().c_str(), &st));
      const int stat_err = errno_of(::stat(file.c_str(), &st));
      const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
      const int open_err = errno_of(fd);
      if (fd >= 0) ::close(fd);
      return lstat_err == EIO && stat_err == EIO && open_err == EIO;
    };
    ASSERT_TRUE(wait_until(all_eio, 15s)) << "the view still answers: " << status();
    struct stat st {};
    EXPECT_EQ(sys(::stat(file.c_str(), &st)), Err{EIO});
    EXPECT_EQ(sys(::stat(view().c_str(), &st)), Err{EIO});
    DIR* d = ::opendir(view().c_str());
    EXPECT_EQ(d, nullptr);
    EXPECT_EQ(errno, EIO);
    if (d) ::closedir(d);
    EXPECT_EQ(sys(::open((view() + "/new.txt").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644)), Err{EIO});
    // Listed above, so the app sees an error, never an absence.
    bool listed = false;
    for (const auto& e : fs::directory_iterator(mnt() + "/apps/notes/data")) listed = listed || e.path() == view();
    EXPECT_TRUE(listed);
    // Nothing was written to the directory under the disk.
    EXPECT_TRUE(fs::is_empty(storage())) << "something landed under the unmounted disk";
  }

  void expect_offline_status() {
    const std::string text = status();
    EXPECT_THAT(text, HasSubstr("store: OFFLINE"));
    EXPECT_THAT(text, HasSubstr(storage() + "/.portalfs-store is missing"));
    const auto json = nlohmann::json::parse(status(true));
    EXPECT_EQ(json["store"]["online"], false);
    EXPECT_EQ(json["store"]["path"], storage());
    EXPECT_EQ(json["store"]["source"], loop);
  }

  // Starts the daemon with the disk there, installs notes and writes a file into its view.
  void start_with_notes() {
    ASSERT_NO_FATAL_FAILURE(start());
    write_file(dir_ / "notes.json", R"({"name": "notes", "data_dirs": ["/data"]})");
    auto r = ctl({"app", "install", dir_ / "notes.json"});
    ASSERT_EQ(r.code, 0) << r.err;
    write_file(view() + "/hello.txt", "kept on the disk");
  }

  void expect_healed() {
    const std::string file = view() + "/hello.txt";
    auto readable = [&] {
      try {
        return read_file(file) == "kept on the disk";
      } catch (const std::exception&) {
        return false;
      }
    };
    ASSERT_TRUE(wait_until(readable, 15s)) << "the view did not heal: " << status();
    struct stat st {};
    EXPECT_EQ(sys(::lstat(view().c_str(), &st)), Err{});
    EXPECT_THAT(status(), HasSubstr("store: online"));
    EXPECT_EQ(nlohmann::json::parse(status(true))["store"]["online"], true);
  }
};

TEST_F(OfflineStore, StartWithoutTheDiskThenMountIt) {
  ASSERT_NO_FATAL_FAILURE(start_with_notes());
  EXPECT_THAT(status(), HasSubstr("store: online"));
  ASSERT_EQ(daemon_->stop(SIGTERM), 0);
  ASSERT_NO_FATAL_FAILURE(unmount_disk(/*lazy=*/false));
  ASSERT_TRUE(fs::is_empty(storage()));

  // Boot order: the daemon starts before the disk is mounted.
  ASSERT_NO_FATAL_FAILURE(start());
  ASSERT_NO_FATAL_FAILURE(expect_offline_status());
  ASSERT_NO_FATAL_FAILURE(expect_views_fail_with_eio());
  EXPECT_THAT(read_file(dir_ / "daemon.log"), HasSubstr("storage root OFFLINE: " + storage()));
  // Installing refuses rather than provisioning on the wrong disk.
  write_file(dir_ / "other.json", R"({"name": "other", "data_dirs": ["/data"]})");
  auto r = ctl({"app", "install", dir_ / "other.json"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("storage root offline, nothing written"));
  EXPECT_TRUE(fs::is_empty(storage()));

  // The disk arrives: the views heal without a restart.
  ASSERT_NO_FATAL_FAILURE(mount_disk());
  ASSERT_NO_FATAL_FAILURE(expect_healed());
  EXPECT_THAT(read_file(dir_ / "daemon.log"), HasSubstr("storage root " + storage() + " is back"));
}

TEST_F(OfflineStore, DiskGoneAtRuntimeThenBack) {
  ASSERT_NO_FATAL_FAILURE(start_with_notes());
  fs::create_directories(view() + "/sub");
  write_file(view() + "/sub/f.txt", "deeper");
  fs::create_directories(bind());
  ASSERT_EQ(::mount(view().c_str(), bind().c_str(), nullptr, MS_BIND, nullptr), 0) << std::strerror(errno);
  // The kernel has the view cached (entries, attributes, the listing), through both paths.
  EXPECT_EQ(read_file(view() + "/hello.txt"), "kept on the disk");
  EXPECT_EQ(read_file(bind() + "/sub/f.txt"), "deeper");
  for (const auto& e : fs::directory_iterator(view())) (void)e;

  ASSERT_NO_FATAL_FAILURE(unmount_disk(/*lazy=*/true));  // the daemon still holds fds on it
  ASSERT_NO_FATAL_FAILURE(expect_views_fail_with_eio());
  ASSERT_NO_FATAL_FAILURE(expect_offline_status());
  // The container's bind (the old view root, pinned) fails too.
  auto bind_eio = [&] {
    const int fd = ::open((bind() + "/sub/f.txt").c_str(), O_RDONLY | O_CLOEXEC);
    const int err = errno_of(fd);
    if (fd >= 0) ::close(fd);
    return err == EIO;
  };
  EXPECT_TRUE(wait_until(bind_eio, 15s));

  ASSERT_NO_FATAL_FAILURE(mount_disk());
  ASSERT_NO_FATAL_FAILURE(expect_healed());
  // Writes go to the disk again, through the view and through the container's bind, below
  // directories the kernel knew before (re-opened through the new mount, not the old one).
  write_file(view() + "/after.txt", "back");
  EXPECT_EQ(read_file(storage() + "/apps/notes/data/after.txt"), "back");
  auto bind_reads = [&] {
    try {
      return read_file(bind() + "/sub/f.txt") == "deeper";
    } catch (const std::exception&) {
      return false;
    }
  };
  ASSERT_TRUE(wait_until(bind_reads, 15s));
  write_file(bind() + "/sub/g.txt", "new");
  EXPECT_EQ(read_file(storage() + "/apps/notes/data/sub/g.txt"), "new");
  EXPECT_EQ(read_file(view() + "/sub/g.txt"), "new");
}

// A share whose backing directory is a mount of its own (a disk for the media, mounted at
// storage/shared/music): the daemon records the mount the first time it finds the backing on
// it, and serves the share only while the path leads there again.
class OfflineShareMount : public DaemonFixture {
 protected:
  std::string image = dir_ / "music.img";
  std::string loop;

  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(DaemonFixture::SetUp());
    if (::access("/dev/loop-control", R_OK | W_OK) != 0) PORTALFS_SKIP_OR_FAIL("no /dev/loop-control");
    auto r = sh("truncate -s 16M '" + image + "' && mkfs.ext4 -q -F '" + image + "'");
    if (r.code != 0) PORTALFS_SKIP_OR_FAIL("cannot make an ext4 image: " + r.err);
    r = sh("losetup --find --show '" + image + "'");
    if (r.code != 0) PORTALFS_SKIP_OR_FAIL("no loop device: " + r.err);
    loop = r.out.substr(0, r.out.find('\n'));
  }
  void TearDown() override {
    DaemonFixture::TearDown();  // stops the daemon first: it holds fds on the disk
    for (int i = 0; i < 3 && mounted(backing()); ++i) {
      if (::umount2(backing().c_str(), 0) != 0) ::umount2(backing().c_str(), MNT_DETACH);
    }
    if (!loop.empty()) sh("losetup -d " + loop);
  }
  std::string backing() { return storage() + "/shared/music"; }
  std::string view() { return mnt() + "/apps/alpha/shared/music"; }
  void mount_disk() {
    auto r = sh("mount " + loop + " '" + backing() + "'");
    ASSERT_EQ(r.code, 0) << r.err;
  }
  // Whether `content`, written as `name` through the view, lands on the disk: the view serves it.
  bool writes_through(const std::string& name, const std::string& content) {
    try {
      write_file(view() + "/" + name, content);
      return read_file(backing() + "/" + name) == content;
    } catch (const std::exception&) {
      return false;
    }
  }
  // Whether the view reads `name` as `content`.
  bool reads(const std::string& name, const std::string& content) {
    try {
      return read_file(view() + "/" + name) == content;
    } catch (const std::exception&) {
      return false;
    }
  }
  // Share music granted to alpha, its disk mounted, recorded and served.
  void start_with_disk() {
    ASSERT_NO_FATAL_FAILURE(start());
    ASSERT_EQ(ctl({"share", "create", "music"}).code, 0);
    write_app("alpha", {{"music", "read-write"}});
    ASSERT_NO_FATAL_FAILURE(install_apps({"alpha"}));
    ASSERT_NO_FATAL_FAILURE(mount_disk());
    ASSERT_TRUE(wait_until([&] { return mount_status().value("online", false); }, 15s)) << "the mount was not recorded";
  }
  nlohmann::json mount_status() {
    auto r = ctl({"status", "--format", "json"});
    EXPECT_EQ(r.code, 0) << r.err;
    const auto json = nlohmann::json::parse(r.out);
    // Not recorded yet: an empty object (value() throws on null), so the waits go on waiting.
    return json.contains("mounts") && json["mounts"].size() == 1 ? json["mounts"][0] : nlohmann::json::object();
  }
};

// A share's trash is on the storage root's file system, and a delete is a rename into it: for a
// share on a disk of its own every delete would fail (EXDEV). So a trash is refused there, with
// one line and nothing changed, and deletes through the view stay plain deletes.
TEST_F(OfflineShareMount, ATrashIsRefusedForAShareOnItsOwnDisk) {
  ASSERT_NO_FATAL_FAILURE(start_with_disk());
  const std::string before = state_files(dir_ / "state");
  auto r = ctl({"share", "set", "music", "--trash", "30d"});
  EXPECT_EQ(r.code, 2) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("share music is a file system of its own"));
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_EQ(state_files(dir_ / "state"), before) << "nothing changed";
  ASSERT_TRUE(wait_until([&] { return writes_through("gone.flac", "bytes"); }, 15s));
  EXPECT_EQ(::unlink((view() + "/gone.flac").c_str()), 0) << std::strerror(errno);
  EXPECT_FALSE(fs::exists(backing() + "/gone.flac"));
}

// A disk retired on purpose: `disk forget` drops its record, the share is served as it leads
// now (the storage root's disk), and a disk mounted there later is recorded anew.
TEST_F(OfflineShareMount, AForgottenDiskIsServedAsItLeadsNowAndRecordedAgain) {
  ASSERT_NO_FATAL_FAILURE(start_with_disk());
  ASSERT_EQ(::umount2(backing().c_str(), MNT_DETACH), 0) << std::strerror(errno);  // the views hold it
  ASSERT_TRUE(wait_until([&] { return !mount_status().value("online", true); }, 15s)) << mount_status().dump();

  const std::string before = state_files(dir_ / "state");
  auto r = ctl({"disk", "forget", storage() + "/shared/nothing"});
  EXPECT_EQ(r.code, 2) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("no disk is recorded for"));
  EXPECT_EQ(state_files(dir_ / "state"), before) << "nothing changed";

  r = ctl({"disk", "forget", backing()});
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_TRUE(mount_status().empty()) << mount_status().dump();
  EXPECT_TRUE(writes_through("root.flac", "on the storage root's disk")) << ctl({"status"}).out;

  ASSERT_NO_FATAL_FAILURE(mount_disk());
  ASSERT_TRUE(wait_until([&] { return mount_status().value("online", false); }, 15s)) << "not recorded again";
  ASSERT_TRUE(wait_until([&] { return writes_through("disk.flac", "on the disk"); }, 15s)) << ctl({"status"}).out;
}

TEST_F(OfflineShareMount, StartWithoutTheShareDiskThenMountIt) {
  // The disk is mounted over the share's directory: recorded, and the view serves the disk.
  ASSERT_NO_FATAL_FAILURE(start_with_disk());
  EXPECT_EQ(mount_status()["mount_point"], backing());
  EXPECT_EQ(mount_status()["source"], loop);
  ASSERT_TRUE(wait_until([&] { return writes_through("song.flac", "on the disk"); }, 15s)) << "the view does not serve the disk";

  ASSERT_EQ(daemon_->stop(SIGTERM), 0);
  ASSERT_EQ(::umount2(backing().c_str(), 0), 0) << std::strerror(errno);
  std::vector<std::string> under;
  for (const auto& e : fs::directory_iterator(backing())) under.push_back(e.path());

  // Started before the share's disk is mounted.
  ASSERT_NO_FATAL_FAILURE(start());
  const auto st = mount_status();
  EXPECT_EQ(st.value("online", true), false) << st.dump();
  const auto text = ctl({"status"}).out;
  EXPECT_THAT(text, HasSubstr("mount: OFFLINE, views answer EIO (share \"music\" (" + backing() + ")"));
  EXPECT_THAT(read_file(dir_ / "daemon.log"), HasSubstr("share \"music\" (" + backing() + ") OFFLINE"));
  auto eio = [&] {
    struct stat sb {};
    const int fd = ::open((view() + "/song.flac").c_str(), O_RDONLY | O_CLOEXEC);
    const int open_err = errno_of(fd);
    if (fd >= 0) ::close(fd);
    return errno_of(::stat(view().c_str(), &sb)) == EIO && open_err == EIO;
  };
  ASSERT_TRUE(wait_until(eio, 15s)) << "the share's view still answers";
  EXPECT_EQ(sys(::open((view() + "/new.flac").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644)), Err{EIO});
  DIR* d = ::opendir(view().c_str());
  EXPECT_EQ(d, nullptr);
  if (d) ::closedir(d);
  std::vector<std::string> after;
  for (const auto& e : fs::directory_iterator(backing())) after.push_back(e.path());
  EXPECT_EQ(after, under) << "something landed under the unmounted disk";

  // The disk arrives: the view heals without a restart.
  ASSERT_NO_FATAL_FAILURE(mount_disk());
  ASSERT_TRUE(wait_until([&] { return reads("song.flac", "on the disk"); }, 15s)) << "the view did not heal: " << ctl({"status"}).out;
  EXPECT_EQ(mount_status().value("online", false), true);
  EXPECT_THAT(read_file(dir_ / "daemon.log"), HasSubstr("share \"music\" (" + backing() + ") is back"));
  write_file(view() + "/after.flac", "back");
  EXPECT_EQ(read_file(backing() + "/after.flac"), "back");
}

TEST_F(OfflineShareMount, ShareDiskGoneAtRuntimeThenBack) {
  ASSERT_NO_FATAL_FAILURE(start_with_disk());
  ASSERT_TRUE(wait_until([&] { return writes_through("song.flac", "on the disk"); }, 15s)) << "the view does not serve the disk";
  EXPECT_EQ(read_file(view() + "/song.flac"), "on the disk");  // cached by the kernel now

  ASSERT_EQ(::umount2(backing().c_str(), MNT_DETACH), 0) << std::strerror(errno);  // the daemon holds fds on it
  auto eio = [&] {
    struct stat sb {};
    const int fd = ::open((view() + "/song.flac").c_str(), O_RDONLY | O_CLOEXEC);
    const int open_err = errno_of(fd);
    if (fd >= 0) ::close(fd);
    return errno_of(::stat((view() + "/song.flac").c_str(), &sb)) == EIO && open_err == EIO;
  };
  ASSERT_TRUE(wait_until(eio, 15s)) << "the share's view still answers: " << ctl({"status"}).out;
  EXPECT_EQ(mount_status().value("online", true), false);
  EXPECT_EQ(sys(::open((view() + "/new.flac").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644)), Err{EIO});
  EXPECT_FALSE(fs::exists(backing() + "/new.flac")) << "written under the unmounted disk";

  ASSERT_NO_FATAL_FAILURE(mount_disk());
  ASSERT_TRUE(wait_until([&] { return reads("song.flac", "on the disk"); }, 15s)) << "the view did not heal: " << ctl({"status"}).out;
  write_file(view() + "/after.flac", "back");
  EXPECT_EQ(read_file(backing() + "/after.flac"), "back");
}

// Another disk mounted where the share's was (a swapped USB disk, a typo in fstab) is not the
// share: its file system's fsid differs, so the views answer EIO and nothing is written to it.
TEST_F(OfflineShareMount, AnotherDiskAtTheSameMountPointIsNotTheShare) {
  const std::string other_image = dir_ / "other.img";
  auto r = sh("truncate -s 16M '" + other_image + "' && mkfs.ext4 -q -F '" + other_image + "'");
  ASSERT_EQ(r.code, 0) << r.err;
  r = sh("losetup --find --show '" + other_image + "'");
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string other_loop = r.out.substr(0, r.out.find('\n'));
  struct Detach {
    std::string loop;
    ~Detach() { sh("losetup -d " + loop); }
  } detach{other_loop};

  ASSERT_NO_FATAL_FAILURE(start_with_disk());
  EXPECT_FALSE(mount_status().value("fsid", std::string()).empty()) << mount_status().dump();
  ASSERT_EQ(::umount2(backing().c_str(), MNT_DETACH), 0) << std::strerror(errno);

  r = sh("mount " + other_loop + " '" + backing() + "'");
  ASSERT_EQ(r.code, 0) << r.err;
  auto eio = [&] {
    struct stat sb {};
    return errno_of(::stat(view().c_str(), &sb)) == EIO;
  };
  // Between the two mounts the share led to the storage root's disk, also offline: wait for the
  // daemon to have seen the other disk, not just for EIO.
  const std::string other = "another disk is mounted there (ext4 from " + other_loop;
  ASSERT_TRUE(wait_until([&] { return ctl({"status"}).out.find(other) != std::string::npos; }, 15s))
      << ctl({"status"}).out;
  EXPECT_TRUE(eio()) << "the other disk is served";
  EXPECT_EQ(sys(::open((view() + "/new.flac").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644)), Err{EIO});
  EXPECT_FALSE(fs::exists(backing() + "/new.flac")) << "written to the other disk";
  // The daemon's check of the mount may hold it for a moment (EBUSY).
  ASSERT_TRUE(wait_until([&] { return ::umount2(backing().c_str(), 0) == 0; }, 10s)) << std::strerror(errno);

  ASSERT_NO_FATAL_FAILURE(mount_disk());
  ASSERT_TRUE(wait_until([&] { return writes_through("after.flac", "back"); }, 15s)) << "the view did not heal: " << ctl({"status"}).out;
}

}  // namespace
}  // namespace portalfs::testutil
