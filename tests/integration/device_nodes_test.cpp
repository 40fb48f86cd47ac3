// SPDX-License-Identifier: MIT
// Device nodes in data views are emulated (fuse/device_nodes.hpp): mknod of a character or
// block device makes an empty regular file on the backing store, its type and numbers kept
// in trusted.portalfs.device, and the view shows the device it claims to be. It is never
// opened as a device (the mount is nodev: the kernel answers EACCES before the daemon hears
// of it), no view shows or takes its record, and what the host leaves on the store with such
// a record lets nothing out either. Shared views refuse device nodes (EPERM), as they refuse
// fifos and sockets.
//
// Runs as root (mknod of a device takes CAP_MKNOD): every refusal here is the daemon's or
// the nodev mount's, not a permission check's.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "tests/integration/fs_helpers.hpp"
#include "tests/integration/mounted_fs.hpp"

namespace portalfs::testutil {
namespace {

constexpr const char* kRecord = "trusted.portalfs.device";

// The record on the backing file, or "" when it has none.
std::string record_of(const std::string& backing_path) {
  char buf[64];
  const ssize_t len = ::lgetxattr(backing_path.c_str(), kRecord, buf, sizeof(buf));
  return len < 0 ? std::string() : std::string(buf, static_cast<size_t>(len));
}

// The xattr names listed for `path`.
std::vector<std::string> xattr_names(const std::string& path) {
  char buf[4096];
  const ssize_t len = ::llistxattr(path.c_str(), buf, sizeof(buf));
  std::vector<std::string> names;
  for (ssize_t i = 0; i < len;) {
    names.emplace_back(buf + i);
    i += static_cast<ssize_t>(names.back().size()) + 1;
  }
  return names;
}

class DeviceNodes : public ::testing::Test {
 protected:
  void SetUp() override {
    PORTALFS_REQUIRE_MOUNT(m_);
    data_ = m_.add_view("app", ViewKind::data, "d");
    data_backing_ = m_.views().back().backing;
    shared_ = m_.add_view("app", ViewKind::shared_squash, "s");
    shared_backing_ = m_.views().back().backing;
  }

  // A file the host leaves on the backing store: `content`, the record `record` and `mode`.
  void plant(const std::string& name, const std::string& content, const std::string& record,
             mode_t mode) {
    const std::string path = data_backing_ + "/" + name;
    write_file(path, content);
    ASSERT_EQ(::setxattr(path.c_str(), kRecord, record.data(), record.size(), 0), 0) << path;
    ASSERT_EQ(::chmod(path.c_str(), mode), 0) << path;
  }

  MountedFs m_;
  std::string data_, data_backing_, shared_, shared_backing_;
};

TEST_F(DeviceNodes, AreShownAsMadeAndStoredAsEmptyRegularFiles) {
  ASSERT_EQ(sys(::mknod((data_ + "/null").c_str(), S_IFCHR | 0640, makedev(1, 3))), kOk);
  ASSERT_EQ(sys(::mknod((data_ + "/sda").c_str(), S_IFBLK | 0644, makedev(8, 0))), kOk);  // a umask of 022 keeps 0644
  struct stat st {};
  ASSERT_TRUE(Lstat(data_ + "/null", &st));
  EXPECT_TRUE(S_ISCHR(st.st_mode)) << std::oct << st.st_mode;
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  EXPECT_EQ(st.st_rdev, makedev(1, 3));
  EXPECT_EQ(st.st_size, 0);
  ASSERT_TRUE(Lstat(data_ + "/sda", &st));
  EXPECT_TRUE(S_ISBLK(st.st_mode)) << std::oct << st.st_mode;
  EXPECT_EQ(st.st_mode & 07777, 0644u);
  EXPECT_EQ(st.st_rdev, makedev(8, 0));
  // On disk: plain empty files, the device in the record, the marker bit set.
  for (const auto& [name, record] : {std::pair{"null", "c 1:3"}, std::pair{"sda", "b 8:0"}}) {
    const std::string path = data_backing_ + "/" + name;
    ASSERT_TRUE(Lstat(path, &st));
    EXPECT_TRUE(S_ISREG(st.st_mode)) << path;
    EXPECT_EQ(st.st_size, 0) << path;
    EXPECT_TRUE(st.st_mode & S_ISGID) << path;
    EXPECT_EQ(record_of(path), record) << path;
  }
}

TEST_F(DeviceNodes, AreNeverOpenedOnTheirNodevMount) {
  struct statvfs sv {};
  ASSERT_EQ(::statvfs(data_.c_str(), &sv), 0);
  EXPECT_TRUE(sv.f_flag & ST_NODEV) << "the emulation relies on a nodev mount";
  // /dev/zero and /dev/null by number: either would answer at once if opened as a device.
  ASSERT_EQ(sys(::mknod((data_ + "/zero").c_str(), S_IFCHR | 0666, makedev(1, 5))), kOk);
  ASSERT_EQ(sys(::mknod((data_ + "/loop").c_str(), S_IFBLK | 0666, makedev(7, 0))), kOk);
  for (const char* name : {"/zero", "/loop"}) {
    for (int flags : {O_RDONLY, O_WRONLY, O_RDWR, O_RDONLY | O_NONBLOCK, O_WRONLY | O_TRUNC}) {
      EXPECT_EQ(open_err(data_ + name, flags), Err{EACCES}) << name << " flags " << flags;
    }
  }
  // The app's own user, owner of the node, too.
  ASSERT_EQ(sys(::chown((data_ + "/zero").c_str(), 1000, 1000)), kOk);
  const std::string zero = data_ + "/zero";
  EXPECT_EQ(run_as(1000, 1000, [&] { return ::open(zero.c_str(), O_RDONLY) < 0 ? errno : 0; }), EACCES);
  // Nothing was written to, or through, the backing file.
  struct stat st {};
  ASSERT_TRUE(Lstat(data_backing_ + "/zero", &st));
  EXPECT_EQ(st.st_size, 0);
}

TEST_F(DeviceNodes, ChmodChownRenameLinkAndUnlinkWorkAsOnAnyNode) {
  ASSERT_EQ(sys(::mknod((data_ + "/tty").c_str(), S_IFCHR | 0620, makedev(4, 1))), kOk);
  struct stat st {};
  ASSERT_EQ(sys(::chmod((data_ + "/tty").c_str(), 01751)), kOk);
  ASSERT_TRUE(Lstat(data_ + "/tty", &st));
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 01751u);
  // chown of a group-executable file clears set-gid on disk: the node must stay a device.
  ASSERT_EQ(sys(::lchown((data_ + "/tty").c_str(), 1000, 1001)), kOk);
  ASSERT_TRUE(Lstat(data_ + "/tty", &st));
  EXPECT_TRUE(S_ISCHR(st.st_mode)) << std::oct << st.st_mode;
  EXPECT_EQ(st.st_uid, 1000u);
  EXPECT_EQ(st.st_gid, 1001u);
  EXPECT_EQ(st.st_mode & 07777, 01751u);
  EXPECT_EQ(st.st_rdev, makedev(4, 1));

  ASSERT_EQ(sys(::rename((data_ + "/tty").c_str(), (data_ + "/tty1").c_str())), kOk);
  ASSERT_EQ(sys(::link((data_ + "/tty1").c_str(), (data_ + "/console").c_str())), kOk);
  for (const char* name : {"/tty1", "/console"}) {
    ASSERT_TRUE(Lstat(data_ + name, &st));
    EXPECT_TRUE(S_ISCHR(st.st_mode)) << name;
    EXPECT_EQ(st.st_rdev, makedev(4, 1)) << name;
    EXPECT_EQ(st.st_nlink, 2u) << name;
  }
  ASSERT_EQ(sys(::unlink((data_ + "/tty1").c_str())), kOk);
  ASSERT_TRUE(Lstat(data_ + "/console", &st));
  EXPECT_EQ(st.st_nlink, 1u);
  ASSERT_EQ(sys(::unlink((data_ + "/console").c_str())), kOk);
  EXPECT_EQ(list_dir(data_backing_), (std::vector<std::string>{".", ".."}));
}

TEST_F(DeviceNodes, TheirRecordIsNeitherShownNorTakenThroughAView) {
  ASSERT_EQ(sys(::mknod((data_ + "/null").c_str(), S_IFCHR | 0666, makedev(1, 3))), kOk);
  write_file(data_ + "/plain", "x");
  const std::string node = data_ + "/null";
  const std::string plain = data_ + "/plain";
  const auto names = xattr_names(node);
  EXPECT_EQ(std::count(names.begin(), names.end(), kRecord), 0);
  char buf[64];
  EXPECT_EQ(sys(::lgetxattr(node.c_str(), kRecord, buf, sizeof(buf))), Err{ENODATA});
  // Forging one (on a plain file), changing or removing one: refused.
  EXPECT_EQ(sys(::lsetxattr(plain.c_str(), kRecord, "c 1:1", 5, 0)), Err{EPERM});
  EXPECT_EQ(sys(::lsetxattr(node.c_str(), kRecord, "c 1:1", 5, 0)), Err{EPERM});
  EXPECT_EQ(sys(::lremovexattr(node.c_str(), kRecord)), Err{EPERM});
  EXPECT_EQ(record_of(data_backing_ + "/null"), "c 1:3");
  EXPECT_EQ(record_of(data_backing_ + "/plain"), "");
  struct stat st {};
  ASSERT_TRUE(Lstat(plain, &st));
  EXPECT_TRUE(S_ISREG(st.st_mode));
}

TEST_F(DeviceNodes, WhatTheHostLeftWithARecordLetsNothingOut) {
  // Only an empty regular file with the marker and a well-formed record is shown as a device,
  // and that one can't be opened; anything else is shown as what it is on disk.
  plant("mem", "", "c 1:1", 0666 | S_ISGID);
  plant("full", "not empty\n", "c 1:1", 0666 | S_ISGID);
  plant("unmarked", "", "c 1:1", 0666);
  plant("garbage", "", "c one:1", 0666 | S_ISGID);
  plant("huge", "", "c 99999:1", 0666 | S_ISGID);
  struct stat st {};
  ASSERT_TRUE(Lstat(data_ + "/mem", &st));
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_EQ(st.st_rdev, makedev(1, 1));
  EXPECT_EQ(open_err(data_ + "/mem", O_RDONLY), Err{EACCES});
  for (const char* name : {"/full", "/unmarked", "/garbage", "/huge"}) {
    ASSERT_TRUE(Lstat(data_ + name, &st));
    EXPECT_TRUE(S_ISREG(st.st_mode)) << name;
    EXPECT_EQ(st.st_rdev, 0u) << name;
    EXPECT_FALSE(st.st_mode & S_ISGID) << name;
  }
  EXPECT_EQ(read_file(data_ + "/full"), "not empty\n");
}

TEST_F(DeviceNodes, SharedViewsRefuseThemLikeFifos) {
  EXPECT_EQ(sys(::mknod((shared_ + "/null").c_str(), S_IFCHR | 0666, makedev(1, 3))), Err{EPERM});
  EXPECT_EQ(sys(::mknod((shared_ + "/loop").c_str(), S_IFBLK | 0666, makedev(7, 0))), Err{EPERM});
  EXPECT_EQ(list_dir(shared_backing_), (std::vector<std::string>{".", ".."}));
}

TEST_F(DeviceNodes, ASharedViewShowsARecordedNodeAsEveryViewDoesAndKeepsItsRecordToo) {
  // A file is what its record says in every view (one file, one type); a shared view makes
  // none, and its xattr rules are the same: the record is neither listed, read nor written.
  const std::string path = shared_backing_ + "/tty";
  write_file(path, "");
  ASSERT_EQ(::setxattr(path.c_str(), kRecord, "c 4:1", 5, 0), 0);
  ASSERT_EQ(::chmod(path.c_str(), 0666 | S_ISGID), 0);
  write_file(shared_ + "/plain", "x");
  struct stat st {};
  ASSERT_TRUE(Lstat(shared_ + "/tty", &st));
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_EQ(st.st_rdev, makedev(4, 1));
  EXPECT_EQ(open_err(shared_ + "/tty", O_RDWR), Err{EACCES});
  const auto names = xattr_names(shared_ + "/tty");
  EXPECT_EQ(std::count(names.begin(), names.end(), kRecord), 0);
  char buf[64];
  EXPECT_EQ(sys(::lgetxattr((shared_ + "/tty").c_str(), kRecord, buf, sizeof(buf))), Err{ENODATA});
  EXPECT_EQ(sys(::lsetxattr((shared_ + "/plain").c_str(), kRecord, "c 1:1", 5, 0)), Err{EPERM});
  EXPECT_EQ(sys(::lremovexattr((shared_ + "/tty").c_str(), kRecord)), Err{EPERM});
  EXPECT_EQ(record_of(path), "c 4:1");
  EXPECT_EQ(record_of(shared_backing_ + "/plain"), "");
}

}  // namespace
}  // namespace portalfs::testutil
