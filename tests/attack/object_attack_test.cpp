// SPDX-License-Identifier: MIT
// Attacks with objects, from inside app A's views (attack_fixture.hpp has the set-up): hard
// links and renames that would carry a file across views, device nodes, set-uid binaries,
// security.capability and trusted.* xattrs, chown to an unmapped id, fifos and sockets in a
// shared directory. Each attack is one TEST; each refusal is checked for its errno and for an
// unchanged disk.
//
// Two callers: the test process itself (root, seeing the whole mount, so a refusal between
// two views is the daemon's), and the app's user 1000 in its "container" (in_jail), where
// each view is its own bind mount and the kernel already refuses links and renames between
// them with EXDEV before the daemon is asked.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "policy/provenance.hpp"
#include "tests/attack/attack_fixture.hpp"

namespace portalfs::testutil {
namespace {

long rename2(const std::string& from, const std::string& to, unsigned flags) {
  return ::syscall(SYS_renameat2, AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), flags);
}

/// A well-formed security.capability value (VFS_CAP_REVISION_2, effective) granting
/// CAP_SETUID: what an attacker would put on a binary.
struct VfsCapData {
  uint32_t magic_etc = 0x02000000 | 0x000001;
  struct {
    uint32_t permitted, inheritable;
  } data[2] = {{1u << 7, 0}, {0, 0}};
};
static_assert(sizeof(VfsCapData) == 20);

/// Binds a unix socket at `path`: 0 or the errno.
int bind_errno(const std::string& path) {
  int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) return 200;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  int err = rc_errno(::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)));
  ::close(s);
  return err;
}

std::vector<std::string> xattr_names(const std::string& path) {
  std::vector<std::string> out;
  char buf[4096];
  ssize_t n = ::llistxattr(path.c_str(), buf, sizeof(buf));
  for (ssize_t i = 0; i < n; i += static_cast<ssize_t>(std::strlen(buf + i)) + 1) out.emplace_back(buf + i);
  return out;
}

mode_t mode_of(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0 ? st.st_mode : 0;
}

// ---- hard links and renames across views ----

TEST_F(Attack, HardLinksOfAReadOnlyShareFileOrAnotherAppsFileAreExdev) {
  // A writable name for a read-only file, or a name in A's view for B's secret.
  auto file = open_fd(s2_ + "/ro_file", O_PATH);
  ASSERT_TRUE(file);
  EXPECT_EQ(sys(::link((s2_ + "/ro_file").c_str(), (a_ + "/stolen").c_str())), Err{EXDEV});
  EXPECT_EQ(sys(::link((s2_ + "/ro_file").c_str(), (s1_ + "/stolen").c_str())), Err{EXDEV});
  EXPECT_EQ(sys(::link((b_ + "/secret").c_str(), (a_ + "/stolen").c_str())), Err{EXDEV});
  EXPECT_EQ(sys(::linkat(file.get(), "", AT_FDCWD, (a_ + "/stolen").c_str(), AT_EMPTY_PATH)),
            Err{EXDEV});
  const std::string magic = "/proc/self/fd/" + std::to_string(file.get());
  EXPECT_EQ(sys(::linkat(AT_FDCWD, magic.c_str(), AT_FDCWD, (a_ + "/stolen").c_str(),
                         AT_SYMLINK_FOLLOW)),
            Err{EXDEV});
  EXPECT_EQ(sys(::link((s2_ + "/ro_file").c_str(), (s2_ + "/second").c_str())), Err{EROFS});
  // The app's user, in its container: the views are separate mounts there.
  EXPECT_EQ(Err{in_jail(kAppUid, kAppGid,
                        [] { return rc_errno(::link("/s2/ro_file", "/data/stolen")); })},
            Err{EXDEV});
  EXPECT_EQ(Err{in_jail(kAppUid, kAppGid, [] {
              int fd = ::open("/s2/ro_file", O_PATH | O_CLOEXEC);
              if (fd < 0) return 200;
              int err = rc_errno(::linkat(AT_FDCWD, ("/proc/self/fd/" + std::to_string(fd)).c_str(),
                                          AT_FDCWD, "/s1/stolen", AT_SYMLINK_FOLLOW));
              ::close(fd);
              return err;
            })},
            Err{EXDEV});
  EXPECT_EQ(list_dir(a_backing_), (std::vector<std::string>{".", ".."}));
  EXPECT_EQ(list_dir(s1_backing_), (std::vector<std::string>{".", ".."}));
  // nlink and ctime of ro_file and B's secret: TearDown's snapshot.
}

TEST_F(Attack, RenamesOutOfAReadOnlyShareOrAnotherAppAreExdev) {
  write_file(a_ + "/f", "A's file\n");
  write_file(s1_ + "/x", "S1's file\n");
  EXPECT_EQ(sys(::rename((s2_ + "/ro_file").c_str(), (a_ + "/moved").c_str())), Err{EXDEV});
  EXPECT_EQ(sys(::rename((b_ + "/secret").c_str(), (a_ + "/moved").c_str())), Err{EXDEV});
  EXPECT_EQ(sys(::rename((a_ + "/f").c_str(), (s2_ + "/ro_file").c_str())), Err{EXDEV});
  EXPECT_EQ(sys(::rename((s1_ + "/x").c_str(), (s2_ + "/x").c_str())), Err{EXDEV});
  EXPECT_EQ(sys(rename2(a_ + "/f", s2_ + "/ro_file", RENAME_EXCHANGE)), Err{EXDEV});
  EXPECT_EQ(sys(rename2(a_ + "/f", b_ + "/secret", RENAME_EXCHANGE)), Err{EXDEV});
  EXPECT_EQ(sys(rename2(s2_ + "/ro_file", s1_ + "/new", RENAME_NOREPLACE)), Err{EXDEV});
  EXPECT_EQ(sys(::rename((s2_ + "/ro_file").c_str(), (s2_ + "/renamed").c_str())), Err{EROFS});
  EXPECT_EQ(Err{in_jail(kAppUid, kAppGid,
                        [] { return rc_errno(::rename("/s2/ro_file", "/s1/moved")); })},
            Err{EXDEV});
  EXPECT_EQ(Err{in_jail(kAppUid, kAppGid,
                        [] { return rc_errno(::rename("/s2/ro_file", "/s2/renamed")); })},
            Err{EROFS});
  EXPECT_EQ(read_file(a_backing_ + "/f"), "A's file\n");
  EXPECT_EQ(list_dir(a_backing_), (std::vector<std::string>{".", "..", "f"}));
  EXPECT_EQ(list_dir(s1_backing_), (std::vector<std::string>{".", "..", "x"}));
}

// ---- device nodes ----

TEST_F(Attack, BlockDeviceOfTheStorageDiskIsNeverOne) {
  // The disk the storage root is on, as a block device the app could read raw. A data view
  // makes an emulated node (fuse/device_nodes.hpp): a regular file on disk that can't be opened;
  // the shares refuse it.
  struct stat storage {};
  ASSERT_TRUE(Stat(m_.storage(), &storage));
  const dev_t disk = storage.st_dev;
  for (const std::string& dir : {s1_, s3_}) {
    EXPECT_EQ(sys(::mknod((dir + "/disk").c_str(), S_IFBLK | 0666, disk)), Err{EPERM}) << dir;
    EXPECT_EQ(sys(::mknod((dir + "/mem").c_str(), S_IFCHR | 0666, makedev(1, 1))), Err{EPERM}) << dir;
  }
  EXPECT_EQ(sys(::mknod((a_ + "/disk").c_str(), S_IFBLK | 0666, disk)), kOk);
  EXPECT_EQ(sys(::mknod((a_ + "/mem").c_str(), S_IFCHR | 0666, makedev(1, 1))), kOk);
  EXPECT_EQ(open_err(a_ + "/disk", O_RDONLY), Err{EACCES});
  EXPECT_EQ(open_err(a_ + "/mem", O_RDWR), Err{EACCES});
  EXPECT_EQ(sys(::mknod((s2_ + "/disk").c_str(), S_IFBLK | 0666, disk)), Err{EROFS});
  // Root in the container (CAP_MKNOD: the daemon emulates it, the nodev bind refuses the
  // open) and the app's user (the kernel refuses: no CAP_MKNOD).
  auto make = [disk] { return rc_errno(::mknod("/data/disk2", S_IFBLK | 0666, disk)); };
  EXPECT_EQ(Err{in_jail(0, 0, make)}, kOk);
  EXPECT_EQ(Err{in_jail(0, 0, [] { return open_errno("/data/disk2", O_RDONLY); })}, Err{EACCES});
  EXPECT_EQ(Err{in_jail(kAppUid, kAppGid, [disk] { return rc_errno(::mknod("/data/disk3", S_IFBLK | 0666, disk)); })},
            Err{EPERM});
  for (const std::string& dir : {s1_backing_, s3_backing_}) {
    EXPECT_EQ(list_dir(dir), (std::vector<std::string>{".", ".."})) << dir;
  }
  EXPECT_EQ(list_dir(a_backing_), (std::vector<std::string>{".", "..", "disk", "disk2", "mem"}));
  for (const char* name : {"/disk", "/disk2", "/mem"}) {
    struct stat st {};
    ASSERT_TRUE(Lstat(a_backing_ + name, &st));
    EXPECT_TRUE(S_ISREG(st.st_mode)) << name;
    EXPECT_EQ(st.st_size, 0) << name;
  }
}

TEST_F(Attack, DeviceNodePlantedByTheHostInAShareCannotBeOpened) {
  // Someone on the host left a device node in a shared directory: the mount is nodev.
  struct stat storage {};
  ASSERT_TRUE(Stat(m_.storage(), &storage));
  ASSERT_EQ(::mknod((s1_backing_ + "/disk").c_str(), S_IFBLK | 0666, storage.st_dev), 0);
  ASSERT_EQ(::mknod((s1_backing_ + "/null").c_str(), S_IFCHR | 0666, makedev(1, 3)), 0);
  EXPECT_EQ(open_err(s1_ + "/disk", O_RDONLY), Err{EACCES});
  EXPECT_EQ(open_err(s1_ + "/null", O_WRONLY), Err{EACCES});
  EXPECT_EQ(Err{in_jail(0, 0, [] { return open_errno("/s1/disk", O_RDONLY); })}, Err{EACCES});
}

TEST_F(Attack, WhiteoutDeviceCannotBeMadeByRename) {
  // RENAME_WHITEOUT leaves a 0/0 character device behind the moved name (overlayfs' marker).
  write_file(s1_ + "/x", "x");
  write_file(a_ + "/x", "x");
  for (const std::string& dir : {s1_, a_}) {
    EXPECT_EQ(sys(rename2(dir + "/x", dir + "/y", RENAME_WHITEOUT)), Err{EINVAL}) << dir;
  }
  EXPECT_EQ(sys(::mknod((s1_ + "/wh").c_str(), S_IFCHR | 0, makedev(0, 0))), Err{EPERM});
  // A data view emulates it: a regular file on disk, which is no whiteout.
  EXPECT_EQ(sys(::mknod((a_ + "/wh").c_str(), S_IFCHR | 0, makedev(0, 0))), kOk);
  EXPECT_EQ(list_dir(s1_backing_), (std::vector<std::string>{".", "..", "x"}));
  EXPECT_EQ(list_dir(a_backing_), (std::vector<std::string>{".", "..", "wh", "x"}));
  struct stat st {};
  ASSERT_TRUE(Lstat(a_backing_ + "/wh", &st));
  EXPECT_TRUE(S_ISREG(st.st_mode));
}

TEST_F(Attack, OTmpfileInAReadOnlyShareOrAnyViewMakesNothing) {
  // An unnamed file linked in later (linkat of /proc/self/fd/N) would be a way to create
  // without a create the daemon sees. The daemon has no tmpfile op: the kernel says so.
  for (const std::string& dir : {s2_, s1_, a_}) {
    EXPECT_EQ(open_err(dir, O_TMPFILE | O_RDWR, 0644), Err{EOPNOTSUPP}) << dir;
  }
  EXPECT_EQ(Err{in_jail(kAppUid, kAppGid, [] { return open_errno("/s2", O_TMPFILE | O_WRONLY); })},
            Err{EOPNOTSUPP});
  EXPECT_EQ(list_dir(s1_backing_), (std::vector<std::string>{".", ".."}));
  EXPECT_EQ(list_dir(a_backing_), (std::vector<std::string>{".", ".."}));
}

TEST_F(Attack, WriteThroughADescriptorOpenedBeforeTheShareTurnedReadOnlyIsRefused) {
  // The app opens a file of S1 for writing, then the platform turns its grant to read-only
  // (DESIGN: a grant change takes effect on the running filesystem at once, and a read-only
  // view refuses every mutation, write included). The descriptor it kept must not write on.
  write_file(s1_ + "/f", "before\n");
  auto fd = open_fd(s1_ + "/f", O_WRONLY);
  ASSERT_TRUE(fd);
  auto views = m_.views();
  for (auto& v : views) {
    if (v.app == "a" && v.dir_name == "s1") v.access = policy::Access::read;
  }
  m_.set_views(views);
  ASSERT_EQ(open_err(s1_ + "/f", O_WRONLY), Err{EROFS});  // the grant did change
  EXPECT_EQ(sys(::pwrite(fd.get(), "AFTER!\n", 7, 0)), Err{EROFS});
  EXPECT_EQ(sys(::ftruncate(fd.get(), 0)), Err{EROFS});
  EXPECT_EQ(sys(::fallocate(fd.get(), 0, 0, 8192)), Err{EROFS});
  fd.reset();
  EXPECT_EQ(read_file(s1_backing_ + "/f"), "before\n");
}

// The kernel keeps directory listings (ops_dir.cpp). A directory of a share the app held
// open when the grant was revoked must not go on listing from that cache, nor show what
// arrives later.
TEST_F(Attack, ADirectoryHeldOpenAcrossARevokeListsNothingMore) {
  write_file(s1_ + "/before", "x");
  auto dir = open_fd(s1_, O_RDONLY | O_DIRECTORY);
  ASSERT_TRUE(dir);
  ASSERT_EQ(list_dir_fd(dir.get()), (std::vector<std::string>{".", "..", "before"}));
  ASSERT_EQ(list_dir_fd(dir.get()), (std::vector<std::string>{".", "..", "before"}));  // cached
  auto views = m_.views();
  std::erase_if(views, [](const policy::ViewSpec& v) { return v.app == "a" && v.dir_name == "s1"; });
  m_.set_views(views);
  write_file(s1_backing_ + "/after", "y");
  auto again = list_dir_fd(dir.get());
  EXPECT_TRUE(std::find(again.begin(), again.end(), "before") == again.end())
      << "the revoked share still lists its old names";
  EXPECT_TRUE(std::find(again.begin(), again.end(), "after") == again.end());
  EXPECT_EQ(open_err(s1_ + "/before", O_RDONLY), Err{ENOENT});
}

// ---- set-uid ----

TEST_F(Attack, SetUidBinaryPlantedThroughAReadWriteShareLosesItsBits) {
  // Stripped rather than refused (DESIGN: "refused or stripped"): the calls succeed, and
  // neither the disk nor a shared view ever holds a set-uid or set-gid file.
  const int rc = in_jail(kAppUid, kAppGid, [] {
    int fd = ::open("/s1/sh", O_CREAT | O_WRONLY | O_CLOEXEC, 04755);
    if (fd < 0) return errno;
    int err = ::write(fd, "#!/bin/sh\nid\n", 13) == 13 ? rc_errno(::fchmod(fd, 06755)) : 201;
    ::close(fd);
    if (err) return err;
    if (::chmod("/s1/sh", 04755) != 0) return errno;
    if (::mknod("/s1/mk", S_IFREG | 06755, 0) != 0) return errno;
    if (::mkdir("/s1/gdir", 02775) != 0) return errno;
    return rc_errno(::chmod("/s1/gdir", 02775));
  });
  EXPECT_EQ(Err{rc}, kOk);
  // Root in the view, in the share and in the app's own data.
  for (const std::string& dir : {s1_, a_}) {
    auto fd = open_fd(dir + "/root-sh", O_CREAT | O_WRONLY, 04755);
    ASSERT_TRUE(fd) << dir;
    EXPECT_EQ(sys(::fchmod(fd.get(), 06755)), kOk);
    fd.reset();
    EXPECT_EQ(sys(::chmod((dir + "/root-sh").c_str(), 04755)), kOk);
  }
  for (const std::string& f : {s1_backing_ + "/sh", s1_backing_ + "/mk", s1_backing_ + "/root-sh",
                               a_backing_ + "/root-sh", s1_ + "/sh", s1_ + "/root-sh"}) {
    EXPECT_EQ(mode_of(f) & 06000, 0u) << f << " mode " << std::oct << mode_of(f);
    EXPECT_NE(mode_of(f) & 0100, 0u) << f;  // still executable: only the bits went
  }
  // The app's own data view shows them, as a disk would (fuse/setid_bits.hpp: its record
  // keeps them, above the disk's, and the mount is nosuid).
  EXPECT_EQ(mode_of(a_ + "/root-sh") & 07777, 04755u);
  EXPECT_EQ(mode_of(s1_backing_ + "/gdir") & 07000, 0u);  // no set-gid dirs in shares either
  // One the host planted is shown without the bit too (and the mount is nosuid).
  write_file(s1_backing_ + "/host-suid", "#!/bin/sh\n");
  ASSERT_EQ(::chmod((s1_backing_ + "/host-suid").c_str(), 04755), 0);
  EXPECT_EQ(mode_of(s1_ + "/host-suid") & 07000, 0u);
}

// ---- xattrs ----

TEST_F(Attack, SecurityCapabilityAndTrustedXattrsCannotBeSet) {
  const VfsCapData cap;
  write_file(s1_ + "/f", "x");
  write_file(a_ + "/f", "x");
  for (const std::string& f : {s1_ + "/f", a_ + "/f", s1_, a_}) {
    EXPECT_EQ(sys(::setxattr(f.c_str(), "security.capability", &cap, sizeof(cap), 0)), Err{EPERM}) << f;
    EXPECT_EQ(sys(::setxattr(f.c_str(), "trusted.overlay.redirect", "/b-v", 4, 0)), Err{EPERM}) << f;
    EXPECT_EQ(sys(::setxattr(f.c_str(), "trusted.evil", "1", 1, 0)), Err{EPERM}) << f;
    EXPECT_EQ(sys(::setxattr(f.c_str(), "security.evil", "1", 1, 0)), Err{EPERM}) << f;
    EXPECT_EQ(sys(::setxattr(f.c_str(), "user.fine", "1", 1, 0)), kOk) << f;  // the contrast
  }
  const int rc = in_jail(kAppUid, kAppGid, [cap] {
    if (::setxattr("/s1/f", "security.capability", &cap, sizeof(cap), 0) == 0) return 0;
    if (errno != EPERM) return errno;
    return rc_errno(::setxattr("/s1/f", "trusted.evil", "1", 1, 0));
  });
  EXPECT_EQ(Err{rc}, Err{EPERM});
  EXPECT_EQ(sys(::setxattr((s2_ + "/ro_file").c_str(), "security.capability", &cap, sizeof(cap), 0)),
            Err{EROFS});
  for (const std::string& f : {s1_backing_ + "/f", a_backing_ + "/f", s1_backing_, a_backing_}) {
    // Besides the daemon's own provenance (policy/provenance.hpp), only what a view may set.
    std::vector<std::string> names = xattr_names(f);
    std::erase_if(names, [](const std::string& n) {
      return n == policy::kCreatedByXattr || n == policy::kChangedByXattr;
    });
    EXPECT_EQ(names, (std::vector<std::string>{"user.fine"})) << f;
  }
}

TEST_F(Attack, CapabilityAndTrustedXattrsPlantedByTheHostAreInvisibleAndKept) {
  const VfsCapData cap;
  const std::string planted = s1_backing_ + "/planted";
  write_file(planted, "#!/bin/sh\n");
  ASSERT_EQ(::setxattr(planted.c_str(), "security.capability", &cap, sizeof(cap), 0), 0);
  ASSERT_EQ(::setxattr(planted.c_str(), "trusted.t", "host", 4, 0), 0);
  const std::string before = snapshot_tree(planted);
  const std::string f = s1_ + "/planted";
  char buf[64];
  EXPECT_EQ(sys(::getxattr(f.c_str(), "security.capability", buf, sizeof(buf))), Err{ENODATA});
  EXPECT_EQ(sys(::getxattr(f.c_str(), "trusted.t", buf, sizeof(buf))), Err{ENODATA});
  EXPECT_EQ(xattr_names(f), std::vector<std::string>{});
  EXPECT_EQ(sys(::removexattr(f.c_str(), "security.capability")), Err{EPERM});
  EXPECT_EQ(sys(::removexattr(f.c_str(), "trusted.t")), Err{EPERM});
  EXPECT_EQ(sys(::setxattr(f.c_str(), "trusted.t", "app", 3, XATTR_REPLACE)), Err{EPERM});
  EXPECT_EQ(snapshot_tree(planted), before);
}

// ---- chown ----

TEST_F(Attack, ChownToAnUnmappedIdIsEinval) {
  write_file(s1_ + "/f", "x");  // stored as 2000:2000, shown as 1000:1000
  // S3 maps disk 0..65535 to host 100000..165535: the host put a file there for disk user
  // 1000 (shown as 101000). Host ids outside the range, root's above all, have no disk id.
  write_file(s3_backing_ + "/f", "x");
  ASSERT_EQ(::chown((s3_backing_ + "/f").c_str(), 1000, 1000), 0);
  ASSERT_EQ(::symlink("f", (s3_backing_ + "/l").c_str()), 0);
  ASSERT_EQ(::lchown((s3_backing_ + "/l").c_str(), 1000, 1000), 0);
  struct stat st {};
  ASSERT_TRUE(Lstat(s3_ + "/f", &st));
  ASSERT_EQ(st.st_uid, 101000u);
  const uid_t keep = static_cast<uid_t>(-1);
  // Squash: only the presented owner is an id at all; the disk owner is not one either.
  EXPECT_EQ(sys(::chown((s1_ + "/f").c_str(), 0, 0)), Err{EINVAL});
  EXPECT_EQ(sys(::chown((s1_ + "/f").c_str(), 2000, 2000)), Err{EINVAL});
  EXPECT_EQ(sys(::chown((s1_ + "/f").c_str(), keep, 0)), Err{EINVAL});
  EXPECT_EQ(sys(::chown((s1_ + "/f").c_str(), 65534, 65534)), Err{EINVAL});
  EXPECT_EQ(sys(::chown(s1_.c_str(), 0, 0)), Err{EINVAL});
  // Range map.
  EXPECT_EQ(sys(::chown((s3_ + "/f").c_str(), 0, keep)), Err{EINVAL});
  EXPECT_EQ(sys(::chown((s3_ + "/f").c_str(), keep, 0)), Err{EINVAL});
  EXPECT_EQ(sys(::chown((s3_ + "/f").c_str(), 65534, keep)), Err{EINVAL});  // the overflow id
  EXPECT_EQ(sys(::chown((s3_ + "/f").c_str(), 165536, keep)), Err{EINVAL});
  EXPECT_EQ(sys(::chown((s3_ + "/f").c_str(), keep, 4000000000u)), Err{EINVAL});
  EXPECT_EQ(sys(::lchown((s3_ + "/l").c_str(), 0, 0)), Err{EINVAL});
  // The app's user may not give its file away at all (the kernel: no CAP_CHOWN).
  EXPECT_EQ(Err{in_jail(kAppUid, kAppGid, [] { return rc_errno(::chown("/s1/f", 0, 0)); })},
            Err{EPERM});
  ASSERT_TRUE(Lstat(s1_backing_ + "/f", &st));
  EXPECT_EQ(st.st_uid, 2000u);
  EXPECT_EQ(st.st_gid, 2000u);
  ASSERT_TRUE(Lstat(s1_backing_, &st));
  EXPECT_EQ(st.st_uid, 2000u);
  for (const char* name : {"/f", "/l"}) {
    ASSERT_TRUE(Lstat(s3_backing_ + name, &st));
    EXPECT_EQ(st.st_uid, 1000u) << name;
    EXPECT_EQ(st.st_gid, 1000u) << name;
  }
}

// ---- fifos and sockets ----

TEST_F(Attack, FifoOrSocketPlantedInASharedDirIsEperm) {
  // A fifo or a listening socket in a directory two apps share is a channel between them.
  const int rc = in_jail(kAppUid, kAppGid, [] {
    if (::mkfifo("/s1/fifo", 0666) == 0) return 0;
    if (errno != EPERM) return errno;
    if (::mknod("/s1/sock", S_IFSOCK | 0666, 0) == 0) return 0;
    if (errno != EPERM) return errno;
    return bind_errno("/s1/bound");
  });
  EXPECT_EQ(Err{rc}, Err{EPERM});
  EXPECT_EQ(sys(::mkfifo((s3_ + "/fifo").c_str(), 0666)), Err{EPERM});
  EXPECT_EQ(Err{bind_errno(s1_ + "/bound")}, Err{EPERM});
  // Made where it is allowed (the app's own data), then carried into the share.
  ASSERT_EQ(sys(::mkfifo((a_ + "/fifo").c_str(), 0666)), kOk);
  ASSERT_EQ(Err{bind_errno(a_ + "/sock")}, kOk);
  for (const char* name : {"/fifo", "/sock"}) {
    EXPECT_EQ(sys(::rename((a_ + name).c_str(), (s1_ + name).c_str())), Err{EXDEV}) << name;
    EXPECT_EQ(sys(::link((a_ + name).c_str(), (s1_ + name).c_str())), Err{EXDEV}) << name;
  }
  EXPECT_EQ(list_dir(s1_backing_), (std::vector<std::string>{".", ".."}));
  EXPECT_EQ(list_dir(s3_backing_), (std::vector<std::string>{".", ".."}));
  EXPECT_TRUE(S_ISFIFO(mode_of(a_backing_ + "/fifo")));
  EXPECT_TRUE(S_ISSOCK(mode_of(a_backing_ + "/sock")));
}

}  // namespace
}  // namespace portalfs::testutil
