// SPDX-License-Identifier: MIT
// Set-uid and set-gid bits in data views (fuse/setid_bits.hpp): an app sets and sees them as on
// a disk, and Linux's rules clear them as on a disk (a chown; a write or truncation by a caller
// without CAP_FSETID), but a regular file never holds them on the backing store: there it has
// the marker S_ISVTX and the record trusted.portalfs.mode. Directories, fifos and sockets keep
// theirs on disk (nothing executes them). Shared views strip them.
//
// Runs as root; the unprivileged callers are forked children (run_as: no capabilities).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "tests/integration/fs_helpers.hpp"
#include "tests/integration/mounted_fs.hpp"

namespace portalfs::testutil {
namespace {

constexpr const char* kRecord = "trusted.portalfs.mode";
constexpr uid_t kOther = 65534;

// The record on the backing file, or "" when it has none.
std::string record_of(const std::string& backing_path) {
  char buf[64];
  const ssize_t len = ::lgetxattr(backing_path.c_str(), kRecord, buf, sizeof(buf));
  return len < 0 ? std::string() : std::string(buf, static_cast<size_t>(len));
}

mode_t mode_of(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0 ? st.st_mode & 07777 : 0;
}

class SetIdBits : public ::testing::Test {
 protected:
  void SetUp() override {
    PORTALFS_REQUIRE_MOUNT(m_);
    data_ = m_.add_view("app", ViewKind::data, "d");
    data_backing_ = m_.views().back().backing;
    shared_ = m_.add_view("app", ViewKind::shared_squash, "s");
    shared_backing_ = m_.views().back().backing;
  }

  std::string view(const std::string& name) const { return data_ + "/" + name; }
  std::string disk(const std::string& name) const { return data_backing_ + "/" + name; }

  // A file of the view with shown mode `mode`, written by root.
  void make(const std::string& name, mode_t mode) {
    write_file(view(name), "#!/bin/sh\n");
    ASSERT_EQ(sys(::chmod(view(name).c_str(), mode)), kOk) << name;
    ASSERT_EQ(mode_of(view(name)), mode) << name;
  }

  // On disk: no set-id bit, the marker and the record `record`.
  void expect_kept_off_disk(const std::string& name, const std::string& record) {
    EXPECT_EQ(mode_of(disk(name)) & 06000, 0u) << name << " mode " << std::oct << mode_of(disk(name));
    EXPECT_EQ((mode_of(disk(name)) & S_ISVTX) != 0, !record.empty()) << name;
    EXPECT_EQ(record_of(disk(name)), record) << name;
  }

  MountedFs m_;
  std::string data_, data_backing_, shared_, shared_backing_;
};

TEST_F(SetIdBits, AreShownAsSetAndKeptOffTheDisk) {
  ASSERT_NO_FATAL_FAILURE(make("f", 06555));
  expect_kept_off_disk("f", "6000");
  EXPECT_EQ(mode_of(disk("f")) & 0777, 0555u) << "the permission bits are the disk's";
  ASSERT_EQ(sys(::chmod(view("f").c_str(), 07755)), kOk);
  EXPECT_EQ(mode_of(view("f")), 07755u);
  expect_kept_off_disk("f", "7000");
  ASSERT_EQ(sys(::chmod(view("f").c_str(), 01755)), kOk);  // sticky alone stays on disk
  EXPECT_EQ(mode_of(view("f")), 01755u);
  EXPECT_EQ(mode_of(disk("f")), 01755u);
  EXPECT_EQ(record_of(disk("f")), "");
  ASSERT_EQ(sys(::chmod(view("f").c_str(), 0640)), kOk);
  EXPECT_EQ(mode_of(view("f")), 0640u);
  EXPECT_EQ(mode_of(disk("f")), 0640u);

  // Made with them: create, mknod.
  auto fd = open_fd(view("c"), O_CREAT | O_WRONLY, 04755);
  ASSERT_TRUE(fd) << std::strerror(errno);
  fd.reset();
  EXPECT_EQ(mode_of(view("c")), 04755u);
  expect_kept_off_disk("c", "4000");
  ASSERT_EQ(sys(::mknod(view("m").c_str(), S_IFREG | 02755, 0)), kOk);
  EXPECT_EQ(mode_of(view("m")), 02755u);
  expect_kept_off_disk("m", "2000");

  // Directories and fifos keep theirs on disk; an emulated device as a regular file.
  ASSERT_EQ(sys(::mkdir(view("dir").c_str(), 0755)), kOk);
  ASSERT_EQ(sys(::chmod(view("dir").c_str(), 06755)), kOk);
  EXPECT_EQ(mode_of(view("dir")), 06755u);
  EXPECT_EQ(mode_of(disk("dir")), 06755u);
  ASSERT_EQ(sys(::mkfifo(view("fifo").c_str(), 0644)), kOk);
  ASSERT_EQ(sys(::chmod(view("fifo").c_str(), 06644)), kOk);
  EXPECT_EQ(mode_of(view("fifo")), 06644u);
  ASSERT_EQ(sys(::mknod(view("null").c_str(), S_IFCHR | 0666, makedev(1, 3))), kOk);
  ASSERT_EQ(sys(::chmod(view("null").c_str(), 06666)), kOk);
  struct stat st {};
  ASSERT_TRUE(Lstat(view("null"), &st));
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 06666u);
  ASSERT_TRUE(Lstat(disk("null"), &st));
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, static_cast<mode_t>(S_ISGID | S_ISVTX | 0666)) << "both markers";
  EXPECT_EQ(record_of(disk("null")), "6000");
}

TEST_F(SetIdBits, AChownClearsThemOnFilesButNotOnDirectories) {
  ASSERT_NO_FATAL_FAILURE(make("f", 06555));
  ASSERT_EQ(sys(::chown(view("f").c_str(), 65532, 65531)), kOk);
  EXPECT_EQ(mode_of(view("f")), 0555u);  // set-gid too: the file is group-executable
  expect_kept_off_disk("f", "");
  // Set-gid of a file that is not group-executable stays, as on a disk.
  ASSERT_NO_FATAL_FAILURE(make("g", 06745));
  ASSERT_EQ(sys(::chown(view("g").c_str(), 0, 65531)), kOk);
  EXPECT_EQ(mode_of(view("g")), 02745u);
  expect_kept_off_disk("g", "2000");
  // The owner's own chown of the group, unprivileged.
  ASSERT_NO_FATAL_FAILURE(make("o", 06555));
  ASSERT_EQ(sys(::chown(view("o").c_str(), kOther, kOther)), kOk);
  ASSERT_EQ(sys(::chmod(view("o").c_str(), 06555)), kOk);
  const std::string o = view("o");
  EXPECT_EQ(run_as(kOther, kOther, [&] { return ::chown(o.c_str(), kOther, kOther) == 0 ? 0 : errno; }), 0);
  EXPECT_EQ(mode_of(view("o")), 0555u);

  ASSERT_EQ(sys(::mkdir(view("dir").c_str(), 06755)), kOk);
  ASSERT_EQ(sys(::chmod(view("dir").c_str(), 06755)), kOk);
  ASSERT_EQ(sys(::chown(view("dir").c_str(), 65532, 65531)), kOk);
  EXPECT_EQ(mode_of(view("dir")), 06755u) << "Linux keeps them on directories";

  // An emulated device stays one through the chown that clears its bits.
  ASSERT_EQ(sys(::mknod(view("null").c_str(), S_IFCHR | 0775, makedev(1, 3))), kOk);
  ASSERT_EQ(sys(::chmod(view("null").c_str(), 06775)), kOk);
  ASSERT_EQ(sys(::chown(view("null").c_str(), 65532, 65531)), kOk);
  struct stat st {};
  ASSERT_TRUE(Lstat(view("null"), &st));
  EXPECT_TRUE(S_ISCHR(st.st_mode)) << std::oct << st.st_mode;
  EXPECT_EQ(st.st_mode & 07777, 0775u);
  EXPECT_EQ(st.st_rdev, makedev(1, 3));
}

TEST_F(SetIdBits, AWriteOrTruncationByACallerWithoutCapFsetidClearsThem) {
  const std::string f = view("f");
  // A write through a descriptor: the mode fstat then shows (pjdfstest chmod/12.t).
  for (const mode_t mode : {04777, 02777, 06777}) {
    ASSERT_NO_FATAL_FAILURE(make("f", mode));
    EXPECT_EQ(run_as(kOther, kOther, [&] {
                const int fd = ::open(f.c_str(), O_RDWR);
                if (fd < 0) return errno;
                struct stat st {};
                const int rc = ::write(fd, "x", 1) == 1 && ::fstat(fd, &st) == 0 ? 0 : errno;
                ::close(fd);
                return rc ? rc : static_cast<int>(st.st_mode & 07777) == 0777 ? 0 : 200;
              }),
              0)
        << std::oct << mode;
    EXPECT_EQ(mode_of(f), 0777u) << std::oct << mode;
    expect_kept_off_disk("f", "");
  }
  // Set-gid without group execute stays (as should_remove_suid says).
  ASSERT_NO_FATAL_FAILURE(make("f", 06767));
  EXPECT_EQ(run_as(kOther, kOther, [&] {
              const int fd = ::open(f.c_str(), O_WRONLY);
              if (fd < 0) return errno;
              const int rc = ::write(fd, "x", 1) == 1 ? 0 : errno;
              ::close(fd);
              return rc;
            }),
            0);
  EXPECT_EQ(mode_of(f), 02767u);
  // Truncations: by name, and an open with O_TRUNC.
  ASSERT_NO_FATAL_FAILURE(make("f", 06777));
  EXPECT_EQ(run_as(kOther, kOther, [&] { return ::truncate(f.c_str(), 1) == 0 ? 0 : errno; }), 0);
  EXPECT_EQ(mode_of(f), 0777u);
  ASSERT_NO_FATAL_FAILURE(make("f", 06777));
  EXPECT_EQ(run_as(kOther, kOther, [&] {
              const int fd = ::open(f.c_str(), O_WRONLY | O_TRUNC);
              if (fd < 0) return errno;
              ::close(fd);
              return 0;
            }),
            0);
  EXPECT_EQ(mode_of(f), 0777u);
  // Root (CAP_FSETID) keeps them, and so does a read.
  ASSERT_NO_FATAL_FAILURE(make("f", 06777));
  {
    auto fd = open_fd(f, O_RDWR);
    ASSERT_TRUE(fd);
    ASSERT_EQ(::pwrite(fd.get(), "y", 1, 0), 1);
    ASSERT_EQ(sys(::ftruncate(fd.get(), 0)), kOk);
  }
  EXPECT_EQ(mode_of(f), 06777u);
  EXPECT_EQ(run_as(kOther, kOther, [&] {
              char c;
              const int fd = ::open(f.c_str(), O_RDONLY);
              if (fd < 0) return errno;
              const int rc = ::read(fd, &c, 1) >= 0 ? 0 : errno;
              ::close(fd);
              return rc;
            }),
            0);
  EXPECT_EQ(mode_of(f), 06777u);
  expect_kept_off_disk("f", "6000");
}

TEST_F(SetIdBits, SharedViewsStripThem) {
  write_file(shared_ + "/f", "x");
  ASSERT_EQ(sys(::chmod((shared_ + "/f").c_str(), 06755)), kOk);
  EXPECT_EQ(mode_of(shared_ + "/f"), 0755u);
  EXPECT_EQ(mode_of(shared_backing_ + "/f") & 07000, 0u);
  EXPECT_EQ(record_of(shared_backing_ + "/f"), "");
  ASSERT_EQ(sys(::mkdir((shared_ + "/d").c_str(), 06755)), kOk);
  EXPECT_EQ(mode_of(shared_ + "/d") & 07000, 0u);
}

// What the host leaves on the store: only a marked regular file's well-formed record is read;
// set-id bits on disk are never shown, and go at an app's first open for writing.
TEST_F(SetIdBits, OnlyAMarkedFilesWellFormedRecordIsShown) {
  const auto plant = [&](const std::string& name, const std::string& record, mode_t mode) {
    write_file(disk(name), "x");
    ASSERT_EQ(::setxattr(disk(name).c_str(), kRecord, record.data(), record.size(), 0), 0);
    ASSERT_EQ(::chmod(disk(name).c_str(), mode), 0);
  };
  ASSERT_NO_FATAL_FAILURE(plant("ok", "4000", 01755));
  ASSERT_NO_FATAL_FAILURE(plant("unmarked", "4000", 0755));
  ASSERT_NO_FATAL_FAILURE(plant("bad", "4000 ", 01755));
  ASSERT_NO_FATAL_FAILURE(plant("too-much", "14000", 01755));
  ASSERT_NO_FATAL_FAILURE(plant("not-octal", "9000", 01755));
  EXPECT_EQ(mode_of(view("ok")), 04755u);
  EXPECT_EQ(mode_of(view("unmarked")), 0755u);
  EXPECT_EQ(mode_of(view("bad")), 01755u);
  EXPECT_EQ(mode_of(view("too-much")), 01755u);
  EXPECT_EQ(mode_of(view("not-octal")), 01755u);
  write_file(disk("host"), "x");
  ASSERT_EQ(::chmod(disk("host").c_str(), 06755), 0);
  EXPECT_EQ(mode_of(view("host")), 0755u);
  EXPECT_TRUE(open_fd(view("host"), O_WRONLY));
  EXPECT_EQ(mode_of(disk("host")), 0755u);
}

TEST_F(SetIdBits, NoAppReadsOrWritesTheRecord) {
  ASSERT_NO_FATAL_FAILURE(make("f", 04755));
  char buf[16];
  EXPECT_EQ(sys(::getxattr(view("f").c_str(), kRecord, buf, sizeof(buf))), Err{ENODATA});
  EXPECT_EQ(sys(::setxattr(view("f").c_str(), kRecord, "0", 1, 0)), Err{EPERM});
  EXPECT_EQ(sys(::removexattr(view("f").c_str(), kRecord)), Err{EPERM});
  char names[256];
  const ssize_t len = ::listxattr(view("f").c_str(), names, sizeof(names));
  EXPECT_EQ(std::string(names, static_cast<size_t>(std::max<ssize_t>(len, 0))).find(kRecord), std::string::npos);
  EXPECT_EQ(record_of(disk("f")), "4000");
}

}  // namespace
}  // namespace portalfs::testutil
