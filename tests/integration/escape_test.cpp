// SPDX-License-Identifier: MIT
// No escape (DESIGN "The filesystem"): a view reaches nothing but its own backing tree. The
// daemon never follows a symlink (the kernel resolves them in the caller's namespace), never
// creates through one planted under a name, links and renames only within one view, makes
// no device nodes on disk (data views emulate them; no fifos where apps share), keeps odd
// names inside, and refuses a mount planted inside a backing directory instead of serving it.
//
// Runs as root: root passes the kernel's permission checks, so each refusal here is the
// daemon's.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <string>
#include <vector>

#include "tests/integration/fs_helpers.hpp"
#include "tests/integration/mounted_fs.hpp"

namespace portalfs::testutil {
namespace {

class Escape : public ::testing::Test {
 protected:
  void SetUp() override {
    PORTALFS_REQUIRE_MOUNT(m_);
    a_ = m_.add_view("a", ViewKind::data, "v");
    a_backing_ = m_.views().back().backing;
    b_ = m_.add_view("b", ViewKind::data, "v");
    b_backing_ = m_.views().back().backing;
    // Something outside every view, standing in for /etc/shadow.
    write_file(outside_ / "shadow", "secret\n");
  }
  /// A name the kernel has just looked up through view A and found missing: it now holds a
  /// negative dentry for it (entry_timeout 1 s), so an open(O_CREAT) of it goes to the
  /// daemon as CREATE without another lookup.
  void look_up_missing(const std::string& name) {
    struct stat st {};
    ASSERT_EQ(sys(::lstat((a_ + "/" + name).c_str(), &st)), Err{ENOENT});
  }

  MountedFs m_;
  TempDir outside_{"portalfs-outside"};
  std::string a_, a_backing_, b_, b_backing_;
};

TEST_F(Escape, SymlinksAreStoredLiterallyAndResolvedInTheCallersNamespace) {
  const std::string abs_target = outside_ / "shadow";
  ASSERT_EQ(sys(::symlink(abs_target.c_str(), (a_ + "/abs").c_str())), kOk);
  // From apps/a/data/v: three levels up is apps/, then B's view, as the caller sees the mount.
  const std::string rel_target = "../../../b/data/v/bfile";
  ASSERT_EQ(sys(::symlink(rel_target.c_str(), (a_ + "/rel").c_str())), kOk);
  write_file(b_ + "/bfile", "B's file\n");

  for (const char* name : {"abs", "rel"}) {
    struct stat st {};
    ASSERT_TRUE(Lstat(a_ + "/" + name, &st));
    EXPECT_TRUE(S_ISLNK(st.st_mode)) << name;
  }
  EXPECT_EQ(readlink_str(a_ + "/abs"), abs_target);
  EXPECT_EQ(readlink_str(a_ + "/rel"), rel_target);
  EXPECT_EQ(readlink_str(a_backing_ + "/abs"), abs_target);
  EXPECT_EQ(readlink_str(a_backing_ + "/rel"), rel_target);

  // The kernel follows them for the caller, in the caller's namespace: the relative one lands
  // in B's view *through the mount* (this test process sees the whole mount). Resolved on the
  // backing side instead it would name <storage>/../../b/data/v/bfile, which does not exist.
  EXPECT_EQ(read_file(a_ + "/rel"), "B's file\n");
  EXPECT_FALSE(exists(a_backing_ + "/../../../b/data/v/bfile"));
  EXPECT_EQ(read_file(a_ + "/abs"), "secret\n");  // the caller could read it anyway
}

TEST_F(Escape, CreateDoesNotFollowASymlinkPlantedUnderTheName) {
  const std::string target = outside_ / "created-by-daemon";
  ASSERT_NO_FATAL_FAILURE(look_up_missing("victim"));
  ASSERT_EQ(::symlink(target.c_str(), (a_backing_ + "/victim").c_str()), 0);
  EXPECT_EQ(open_err(a_ + "/victim", O_CREAT | O_WRONLY, 0644),
            Err{ELOOP});
  EXPECT_FALSE(exists(target)) << "the daemon created a file outside the view";

  const std::string existing = outside_ / "shadow";
  ASSERT_NO_FATAL_FAILURE(look_up_missing("victim2"));
  ASSERT_EQ(::symlink(existing.c_str(), (a_backing_ + "/victim2").c_str()), 0);
  EXPECT_EQ(open_err(a_ + "/victim2", O_CREAT | O_WRONLY | O_TRUNC, 0644),
            Err{ELOOP});
  EXPECT_EQ(read_file(existing), "secret\n") << "the daemon truncated a file outside the view";
}

TEST_F(Escape, CreateExclusiveOnANamePlantedSinceTheLookupIsEexist) {
  // A name the host made after the kernel cached it as missing: an exclusive create must
  // say EEXIST and leave the file alone (opening it instead would hand it out, and with
  // O_TRUNC destroy it). The kernel re-validates a negative dentry for O_EXCL itself; the
  // race it cannot close, two views creating at once, is Stress.ExclusiveCreate...
  ASSERT_NO_FATAL_FAILURE(look_up_missing("x"));
  write_file(a_backing_ + "/x", "original");
  EXPECT_EQ(open_err(a_ + "/x", O_CREAT | O_EXCL | O_WRONLY | O_TRUNC, 0644),
            Err{EEXIST});
  EXPECT_EQ(read_file(a_backing_ + "/x"), "original");

  // A planted symlink is an existing name too (O_EXCL never follows).
  ASSERT_NO_FATAL_FAILURE(look_up_missing("y"));
  ASSERT_EQ(::symlink((outside_ / "shadow").c_str(), (a_backing_ + "/y").c_str()), 0);
  EXPECT_EQ(open_err(a_ + "/y", O_CREAT | O_EXCL | O_WRONLY, 0644),
            Err{EEXIST});
}

TEST_F(Escape, DotDotAtAViewRootIsTheSyntheticParent) {
  m_.add_view("a", ViewKind::data, "w");
  struct stat up {}, kind_dir {}, backing_parent {};
  ASSERT_TRUE(Stat(a_ + "/..", &up));
  ASSERT_TRUE(Stat(m_.mountpoint() + "/apps/a/data", &kind_dir));
  ASSERT_TRUE(Stat(a_backing_ + "/..", &backing_parent));
  EXPECT_EQ(up.st_ino, kind_dir.st_ino);
  EXPECT_NE(up.st_ino, backing_parent.st_ino);
  EXPECT_EQ(up.st_mode & 07777, 0555u);
  EXPECT_EQ(list_dir(a_ + "/.."), (std::vector<std::string>{".", "..", "v", "w"}));
  EXPECT_EQ(list_dir(a_ + "/../../.."), (std::vector<std::string>{".", "..", "a", "b"}));
}

TEST_F(Escape, ReaddirOfAViewRootShowsDotDotAsTheSyntheticParent) {
  // A listing must not disagree with stat("..") either: at a view root the backing parent's
  // inode number is not what ".." is.
  struct stat up {};
  ASSERT_TRUE(Stat(a_ + "/..", &up));
  DIR* d = ::opendir(a_.c_str());
  ASSERT_NE(d, nullptr);
  ino_t dotdot = 0;
  while (dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, "..") == 0) dotdot = e->d_ino;
  }
  ::closedir(d);
  EXPECT_EQ(dotdot, up.st_ino);
}

TEST_F(Escape, HardLinkIntoAnotherViewIsExdev) {
  write_file(a_ + "/f", "a's");
  EXPECT_EQ(sys(::link((a_ + "/f").c_str(), (b_ + "/f").c_str())), Err{EXDEV});
  EXPECT_FALSE(exists(b_backing_ + "/f"));
  struct stat st {};
  ASSERT_TRUE(Lstat(a_backing_ + "/f", &st));
  EXPECT_EQ(st.st_nlink, 1u);
}

long rename2(const std::string& from, const std::string& to, unsigned flags) {
  return ::syscall(SYS_renameat2, AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), flags);
}

TEST_F(Escape, RenameAcrossViewsIsExdevEvenWithinOneApp) {
  const std::string a_other = m_.add_view("a", ViewKind::data, "w");
  const std::string a_shared = m_.add_view("a", ViewKind::shared_squash, "media");
  write_file(a_ + "/f", "a's");
  write_file(b_ + "/g", "b's");
  for (const std::string& to : {b_, a_other, a_shared}) {
    EXPECT_EQ(sys(::rename((a_ + "/f").c_str(), (to + "/f").c_str())), Err{EXDEV}) << to;
    EXPECT_EQ(sys(rename2(a_ + "/f", to + "/f", RENAME_NOREPLACE)), Err{EXDEV}) << to;
  }
  EXPECT_EQ(sys(rename2(a_ + "/f", b_ + "/g", RENAME_EXCHANGE)), Err{EXDEV});
  EXPECT_EQ(read_file(a_backing_ + "/f"), "a's");
  EXPECT_EQ(read_file(b_backing_ + "/g"), "b's");
  EXPECT_FALSE(exists(b_backing_ + "/f"));
  for (size_t i = 2; i < m_.views().size(); ++i) {
    EXPECT_EQ(list_dir(m_.views()[i].backing).size(), 2u) << m_.views()[i].backing;
  }
}

class PerKind : public ::testing::TestWithParam<ViewKind> {
 protected:
  void SetUp() override {
    PORTALFS_REQUIRE_MOUNT(m_);
    view_ = m_.add_view("app", GetParam(), "v");
    backing_ = m_.views().back().backing;
  }
  MountedFs m_;
  std::string view_, backing_;
};

TEST_P(PerKind, NoDeviceNodeReachesTheDisk) {
  // Data views emulate them (device_nodes_test.cpp): a regular file on disk. Shared views
  // refuse them.
  const bool data = GetParam() == ViewKind::data;
  EXPECT_EQ(sys(::mknod((view_ + "/null").c_str(), S_IFCHR | 0666, makedev(1, 3))), data ? kOk : Err{EPERM});
  EXPECT_EQ(sys(::mknod((view_ + "/loop").c_str(), S_IFBLK | 0660, makedev(7, 0))), data ? kOk : Err{EPERM});
  if (data) {
    struct stat st {};
    for (const char* name : {"/null", "/loop"}) {
      ASSERT_TRUE(Lstat(backing_ + name, &st));
      EXPECT_TRUE(S_ISREG(st.st_mode)) << name;
      EXPECT_EQ(open_err(view_ + name, O_RDWR), Err{EACCES}) << name;
    }
  } else {
    EXPECT_EQ(list_dir(backing_).size(), 2u) << "something was made on disk";
  }
}

TEST_P(PerKind, FifosAndSocketsOnlyInDataViews) {
  const bool data = GetParam() == ViewKind::data;
  // Root is not mapped in a range-mapped view; a data view or squash needs no mapping. The
  // type is refused before the owner is even asked for.
  const Err made = GetParam() == ViewKind::shared_map ? Err{EOVERFLOW} : kOk;
  EXPECT_EQ(sys(::mkfifo((view_ + "/fifo").c_str(), 0644)), data ? made : Err{EPERM});
  EXPECT_EQ(sys(::mknod((view_ + "/sock").c_str(), S_IFSOCK | 0644, 0)), data ? made : Err{EPERM});
  struct stat st {};
  if (data) {
    ASSERT_TRUE(Lstat(backing_ + "/fifo", &st));
    EXPECT_TRUE(S_ISFIFO(st.st_mode));
    ASSERT_TRUE(Lstat(backing_ + "/sock", &st));
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
  } else {
    EXPECT_EQ(list_dir(backing_).size(), 2u) << "something was made on disk";
  }
}

INSTANTIATE_TEST_SUITE_P(EveryWritableKind, PerKind,
                         ::testing::Values(ViewKind::data, ViewKind::shared_map,
                                           ViewKind::shared_squash),
                         [](const ::testing::TestParamInfo<ViewKind>& p) {
                           return std::string(to_string(p.param));
                         });

TEST_F(Escape, NamesWithNewlinesWorkAndStayInside) {
  const std::vector<std::string> names = {"line1\nline2", "\n", "..\n..", "\n..", "tab\there"};
  for (const auto& n : names) write_file(a_ + "/" + n, n);
  std::vector<std::string> want = {".", ".."};
  want.insert(want.end(), names.begin(), names.end());
  std::sort(want.begin(), want.end());
  EXPECT_EQ(list_dir(a_), want);
  EXPECT_EQ(list_dir(a_backing_), want);
  for (const auto& n : names) {
    EXPECT_EQ(read_file(a_backing_ + "/" + n), n);
    EXPECT_EQ(read_file(a_ + "/" + n), n);
  }
  EXPECT_EQ(list_dir(b_backing_).size(), 2u);
  // The storage root still holds only the backing directories.
  EXPECT_EQ(list_dir(m_.storage()), (std::vector<std::string>{".", "..", "a-v", "b-v"}));
}

TEST_F(Escape, BindMountOfTheSameFileSystemInsideABackingDirIsRefused) {
  ASSERT_EQ(::mkdir((a_backing_ + "/sub").c_str(), 0755), 0);
  write_file(a_backing_ + "/sub/under", "hidden by the mount");
  write_file(outside_ / "planted", "host data");
  // A bind mount of a directory on the same file system: same st_dev as the view.
  BindMount bind(outside_.path(), a_backing_ + "/sub");
  if (!bind.ok()) PORTALFS_SKIP_OR_FAIL(bind.error());
  struct stat st {};
  EXPECT_EQ(sys(::lstat((a_ + "/sub").c_str(), &st)), Err{EXDEV});
  EXPECT_EQ(sys(::lstat((a_ + "/sub/planted").c_str(), &st)), Err{EXDEV});
  EXPECT_EQ(open_err(a_ + "/sub/planted", O_RDONLY), Err{EXDEV});
}

TEST_F(Escape, MountOfAnotherFileSystemInsideABackingDirIsRefused) {
  ASSERT_EQ(::mkdir((a_backing_ + "/sub").c_str(), 0755), 0);
  TmpfsMount tmpfs(a_backing_ + "/sub");
  if (!tmpfs.ok()) PORTALFS_SKIP_OR_FAIL(tmpfs.error());
  write_file(a_backing_ + "/sub/planted", "tmpfs data");
  struct stat st {};
  EXPECT_EQ(sys(::lstat((a_ + "/sub").c_str(), &st)), Err{EXDEV});
  EXPECT_EQ(open_err(a_ + "/sub/planted", O_RDONLY), Err{EXDEV});
}

}  // namespace
}  // namespace portalfs::testutil
