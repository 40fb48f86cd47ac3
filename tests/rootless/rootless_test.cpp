// SPDX-License-Identifier: MIT
// Issue #15, rootless: the FUSE layer mounted and served by an ordinary user, through the
// set-uid fusermount3 (ctest -L rootless; run-as-user runs this binary as such a user). What
// needs root is refused with EPERM and a line naming it, never done as the daemon's user
// instead: creating as another owner (a view's squash or id map), chown to another owner.
// Mount, read/write/create/rename/unlink, views and the policy's errnos work as for root.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstring>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/fs_helpers.hpp"
#include "tests/integration/mounted_fs.hpp"
#include "tests/testutil/process.hpp"

namespace portalfs::testutil {
namespace {

// The options field of this process's mount at `mountpoint` ("" when not mounted) and its
// super options (after " - ").
struct MountLine {
  std::string fstype;
  std::string super_options;
};
std::optional<MountLine> mount_at(const std::string& mountpoint) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  std::optional<MountLine> found;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string id, parent, devno, root, mnt;
    ls >> id >> parent >> devno >> root >> mnt;
    if (mnt != mountpoint) continue;
    auto dash = line.find(" - ");
    std::istringstream rs(line.substr(dash + 3));
    MountLine m;
    std::string source;
    rs >> m.fstype >> source >> m.super_options;
    found = m;
  }
  return found;
}

class Rootless : public ::testing::Test {
 protected:
  void SetUp() override {
    // The lane means nothing as root: run-as-user drops the ids first.
    ASSERT_NE(::geteuid(), 0u) << "the rootless lane must run as an ordinary user (tests/rootless/run-as-user)";
  }
};

TEST_F(Rootless, MountsThroughFusermountWithoutAllowOther) {
  std::string mountpoint;
  {
    MountedFs m;
    PORTALFS_REQUIRE_MOUNT(m);
    mountpoint = m.mountpoint();
    auto line = mount_at(mountpoint);
    ASSERT_TRUE(line) << "not in mountinfo: " << mountpoint;
    EXPECT_EQ(line->fstype, "fuse.portalfs");
    // fusermount3 records the mounting user; allow_other is not asked for (no user_allow_other).
    EXPECT_NE(line->super_options.find("user_id=" + std::to_string(::geteuid())), std::string::npos)
        << line->super_options;
    EXPECT_EQ(line->super_options.find("allow_other"), std::string::npos) << line->super_options;
    const auto missing = m.fs().privileges().missing();
    EXPECT_FALSE(m.fs().privileges().allow_other);
    EXPECT_FALSE(m.fs().privileges().sys_admin);
    EXPECT_FALSE(m.fs().privileges().decode_handles);
    EXPECT_FALSE(m.fs().privileges().other_owners);
    EXPECT_EQ(missing.size(), 4u);
    // The top directories are the daemon user's: it can go through its own mount.
    struct stat st {};
    ASSERT_TRUE(Stat(mountpoint + "/apps", &st));
    EXPECT_EQ(st.st_uid, ::geteuid());
  }
  // The teardown unmounted through fusermount3 -u.
  EXPECT_FALSE(mount_at(mountpoint)) << mountpoint << " is still mounted";
}

TEST_F(Rootless, DataViewReadWriteCreateRenameUnlink) {
  MountedFs m;
  PORTALFS_REQUIRE_MOUNT(m);
  const std::string v = m.add_view("alpha", ViewKind::data);
  const std::string backing = m.storage() + "/alpha-v";
  {
    auto fd = open_fd(v + "/notes.txt", O_CREAT | O_EXCL | O_RDWR, 0640);
    ASSERT_TRUE(fd) << std::strerror(errno);
    ASSERT_TRUE(write_all(fd.get(), "hello rootless"));
    EXPECT_EQ(pread_str(fd.get(), 100, 0), "hello rootless");
  }
  struct stat st {};
  ASSERT_TRUE(Lstat(backing + "/notes.txt", &st));
  EXPECT_EQ(st.st_uid, ::geteuid());  // made as the daemon's (and caller's) own user
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  EXPECT_EQ(st.st_size, 14);
  EXPECT_EQ(sys(::mkdir((v + "/d").c_str(), 0750)), kOk);
  EXPECT_EQ(sys(::rename((v + "/notes.txt").c_str(), (v + "/d/n.txt").c_str())), kOk);
  EXPECT_TRUE(std::filesystem::exists(backing + "/d/n.txt"));
  EXPECT_EQ(sys(::symlink("n.txt", (v + "/d/link").c_str())), kOk);
  EXPECT_EQ(sys(::chmod((v + "/d/n.txt").c_str(), 0600)), kOk);
  ASSERT_TRUE(Lstat(backing + "/d/n.txt", &st));
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  // chown to its own ids is no change of owner and is allowed.
  EXPECT_EQ(sys(::chown((v + "/d/n.txt").c_str(), ::geteuid(), ::getegid())), kOk);
  EXPECT_EQ((list_dir(v + "/d")), (std::vector<std::string>{".", "..", "link", "n.txt"}));
  EXPECT_EQ(sys(::unlink((v + "/d/link").c_str())), kOk);
  EXPECT_EQ(sys(::unlink((v + "/d/n.txt").c_str())), kOk);
  EXPECT_EQ(sys(::rmdir((v + "/d").c_str())), kOk);
  EXPECT_FALSE(std::filesystem::exists(backing + "/d"));
}

// A rootless daemon can't write a regular file's set-id record (trusted.* is CAP_SYS_ADMIN's:
// fuse/setid_bits.hpp): the bits are stripped, as every view did before the records; a
// directory keeps them on disk.
TEST_F(Rootless, SetIdBitsOfFilesAreStripped) {
  MountedFs m;
  PORTALFS_REQUIRE_MOUNT(m);
  const std::string v = m.add_view("alpha", ViewKind::data);
  const std::string backing = m.storage() + "/alpha-v";
  auto fd = open_fd(v + "/c", O_CREAT | O_WRONLY, 04755);
  ASSERT_TRUE(fd) << std::strerror(errno);
  fd.reset();
  write_file(v + "/f", "x");
  EXPECT_EQ(sys(::chmod((v + "/f").c_str(), 06750)), kOk);
  EXPECT_EQ(sys(::mkdir((v + "/d").c_str(), 0750)), kOk);
  EXPECT_EQ(sys(::chmod((v + "/d").c_str(), 02750)), kOk);
  struct stat st {};
  for (const auto& [name, want] : {std::pair{"c", 0755u}, std::pair{"f", 0750u}, std::pair{"d", 02750u}}) {
    ASSERT_TRUE(Lstat(v + "/" + name, &st));
    EXPECT_EQ(st.st_mode & 07777, want) << name << " in the view";
    ASSERT_TRUE(Lstat(backing + "/" + name, &st));
    EXPECT_EQ(st.st_mode & 07777, want) << name << " on disk";
  }
}

TEST_F(Rootless, ChownToAnotherOwnerIsRefused) {
  MountedFs m;
  PORTALFS_REQUIRE_MOUNT(m);
  const std::string v = m.add_view("alpha", ViewKind::data);
  write_file(m.storage() + "/alpha-v/f", "x");
  EXPECT_EQ(sys(::chown((v + "/f").c_str(), 4242, static_cast<gid_t>(-1))), Err{EPERM});
  struct stat st {};
  ASSERT_TRUE(Lstat(m.storage() + "/alpha-v/f", &st));
  EXPECT_EQ(st.st_uid, ::geteuid());
}

// A view that makes files as another owner (squash to 2000:2000): a rootless daemon can't, so
// every create fails with EPERM and nothing lands on disk (not a file of the daemon's user).
TEST_F(Rootless, CreatingAsAnotherOwnerIsRefused) {
  MountedFs m;
  PORTALFS_REQUIRE_MOUNT(m);
  const std::string backing = m.storage() + "/alpha-s";
  std::filesystem::create_directories(backing);
  auto spec = MountedFs::preset("alpha", ViewKind::shared_squash, "s", backing);
  spec.anchor = m.storage();
  // Presented as its own user, so the kernel's permission check lets the caller in.
  spec.ids.squash = policy::Squash{2000, 2000, ::geteuid(), ::getegid()};
  m.set_views({spec});
  const std::string v = m.path(spec);
  EXPECT_EQ(open_err(v + "/new", O_CREAT | O_WRONLY), Err{EPERM});
  EXPECT_EQ(sys(::mkdir((v + "/dir").c_str(), 0755)), Err{EPERM});
  EXPECT_EQ(sys(::mknod((v + "/fifo").c_str(), S_IFIFO | 0644, 0)), Err{EPERM});
  EXPECT_EQ(sys(::symlink("x", (v + "/ln").c_str())), Err{EPERM});
  EXPECT_EQ((list_dir(backing)), (std::vector<std::string>{".", ".."}));
  // What is there reads and writes as usual.
  write_file(backing + "/old", "abc");
  auto fd = open_fd(v + "/old", O_RDWR);
  ASSERT_TRUE(fd) << std::strerror(errno);
  EXPECT_TRUE(write_all(fd.get(), "xyz"));
  EXPECT_EQ(pread_str(fd.get(), 10, 0), "xyz");
}

TEST_F(Rootless, ReadOnlyViewAnswersErofs) {
  MountedFs m;
  PORTALFS_REQUIRE_MOUNT(m);
  const std::string backing = m.storage() + "/share";
  std::filesystem::create_directories(backing);
  write_file(backing + "/doc", "shared");
  auto ro = m.shared_view("beta", "docs", backing, policy::Access::read);
  m.set_views({ro});
  const std::string v = m.path(ro);
  auto fd = open_fd(v + "/doc", O_RDONLY);
  ASSERT_TRUE(fd) << std::strerror(errno);
  EXPECT_EQ(pread_str(fd.get(), 10, 0), "shared");
  EXPECT_EQ(open_err(v + "/doc", O_WRONLY), Err{EROFS});
  EXPECT_EQ(open_err(v + "/new", O_CREAT | O_WRONLY), Err{EROFS});
  EXPECT_EQ(sys(::unlink((v + "/doc").c_str())), Err{EROFS});
  EXPECT_EQ(sys(::mkdir((v + "/d").c_str(), 0755)), Err{EROFS});
  EXPECT_EQ((list_dir(backing)), (std::vector<std::string>{".", "..", "doc"}));
}

// Two apps' views of one share: what one writes the other reads; each app sees only its own
// views under apps/, and names outside the views answer as the policy says.
TEST_F(Rootless, ViewsOfTwoAppsShareOneDirectory) {
  MountedFs m;
  PORTALFS_REQUIRE_MOUNT(m);
  const std::string backing = m.storage() + "/share";
  std::filesystem::create_directories(backing);
  auto a = m.shared_view("alpha", "s", backing, policy::Access::read_write);
  auto b = m.shared_view("beta", "s", backing, policy::Access::read_write);
  m.set_views({a, b});
  write_file(m.path(a) + "/from-alpha", "one");
  std::ifstream in(m.path(b) + "/from-alpha");
  std::string got((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(got, "one");
  EXPECT_EQ((list_dir(m.mountpoint() + "/apps")), (std::vector<std::string>{".", "..", "alpha", "beta"}));
  // Above the views nothing may be made.
  EXPECT_EQ(sys(::mkdir((m.mountpoint() + "/apps/gamma").c_str(), 0755)), Err{EACCES});
  EXPECT_EQ(sys(::rename((m.path(a) + "/from-alpha").c_str(), (m.mountpoint() + "/apps/x").c_str())),
            Err{EACCES});
}

// Without open_by_handle_at every inode the kernel knows keeps its fd: more files than the fd
// cache holds still resolve (none answers ESTALE as a handle that can't be re-opened would).
TEST_F(Rootless, MoreFilesThanTheFdCache) {
  fuse::Options o;
  o.fd_cache = 8;
  MountedFs m(o);
  PORTALFS_REQUIRE_MOUNT(m);
  const std::string v = m.add_view("alpha", ViewKind::data);
  for (int i = 0; i < 100; ++i) write_file(v + "/f" + std::to_string(i), std::to_string(i));
  for (int i = 0; i < 100; ++i) {
    std::ifstream in(v + "/f" + std::to_string(i));
    std::string got;
    in >> got;
    ASSERT_EQ(got, std::to_string(i)) << "f" << i;
  }
  EXPECT_EQ(list_dir(v).size(), 102u);
}

// The real portalfsd run as this user: without paths of its own it names them and exits 2,
// with them it mounts, serves portalctl over its socket (its own uid is let in) and the apps
// whose directories can be this user's.
TEST_F(Rootless, PortalfsdNeedsItsOwnPathsAndServesItsUser) {
  auto refused = run_command({program("portalfsd"), "--foreground"});
  EXPECT_EQ(refused.code, 2);
  EXPECT_NE(refused.err.find("not root): give --storage-root, --state-dir, --mountpoint and --socket"),
            std::string::npos)
      << refused.err;
  EXPECT_EQ(std::count(refused.err.begin(), refused.err.end(), '\n'), 1) << refused.err;

  TempDir dir("portalfs-rootless-daemon");
  const std::string mnt = dir / "mnt", sock = dir / "ctl.sock", log = dir / "daemon.log";
  Child daemon({program("portalfsd"), "--foreground", "--storage-root", dir / "storage", "--state-dir",
                dir / "state", "--mountpoint", mnt, "--socket", sock, "--example"},
               log);
  const auto ctl = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {program("portalctl"), "--socket", sock});
    return run_command(args);
  };
  ASSERT_TRUE(wait_until([&] { return ctl({"status"}).code == 0; }, std::chrono::seconds(30))) << read_file(log);
  // The example app's directories belong to uid 1000: its install is refused (a chown only root
  // may do), with a line saying so, and nothing of it is served.
  ASSERT_TRUE(wait_until([&] { return read_file(log).find("example app: ") != std::string::npos; },
                         std::chrono::seconds(30)))
      << read_file(log);
  EXPECT_NE(read_file(log).find("Operation not permitted"), std::string::npos) << read_file(log);
  EXPECT_FALSE(std::filesystem::exists(mnt + "/apps/notes"));
  // An app whose directories are the user's is served.
  write_file(dir / "alpha.json", R"({"name": "alpha", "data_dirs": ["/data"]})");
  auto installed = ctl({"app", "install", dir / "alpha.json"});
  ASSERT_EQ(installed.code, 0) << installed.err;
  const std::string data = mnt + "/apps/alpha/data/data";
  write_file(data + "/hello.txt", "from the user");
  struct stat st {};
  ASSERT_TRUE(Lstat(dir / "storage/apps/alpha/data/hello.txt", &st));
  EXPECT_EQ(st.st_uid, ::geteuid());
  EXPECT_EQ(daemon.stop(SIGTERM), 0) << read_file(log);
  EXPECT_FALSE(mount_at(mnt)) << mnt << " is still mounted";
  // What it goes without was said at start, one line each.
  const std::string text = read_file(log);
  EXPECT_NE(text.find("rootless: not root: mounted through fusermount3 without allow_other"), std::string::npos)
      << text;
  EXPECT_NE(text.find("rootless: no CAP_SYS_ADMIN: no kernel passthrough"), std::string::npos) << text;
}

}  // namespace
}  // namespace portalfs::testutil
