// SPDX-License-Identifier: MIT
// A read-only view refuses every mutation with EROFS (DESIGN "Read-only views"), and the
// synthetic directories above the views are read-only too. Table-driven: one row per
// mutation, each run on a fresh mount over the same pre-made backing tree, and each also
// checks that nothing on the backing disk changed.
//
// The caller is root on purpose: root passes the kernel's own permission checks
// (default_permissions), so every request reaches the daemon and the EROFS is its answer.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <sys/sysmacros.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/fs_helpers.hpp"
#include "tests/integration/mounted_fs.hpp"

namespace portalfs::testutil {
namespace {

struct Paths {
  std::string ro;    // the read-only view
  std::string data;  // a writable data view of another app
  [[nodiscard]] std::string operator()(const std::string& rel) const { return ro + "/" + rel; }
};

/// What a listing of a backing tree records: enough to notice any change at all.
std::string snapshot(const std::string& dir) {
  std::ostringstream out;
  std::function<void(const std::string&, const std::string&)> walk = [&](const std::string& abs,
                                                                          const std::string& rel) {
    for (const auto& name : list_dir(abs)) {
      if (name == "." || name == "..") continue;
      const std::string p = abs + "/" + name;
      struct stat st {};
      if (::lstat(p.c_str(), &st) != 0) continue;
      out << rel << name << " mode=" << std::oct << st.st_mode << std::dec << " uid=" << st.st_uid
          << " gid=" << st.st_gid << " size=" << st.st_size << " nlink=" << st.st_nlink
          << " mtime=" << st.st_mtim.tv_sec << "." << st.st_mtim.tv_nsec;
      char buf[256];
      ssize_t n = ::lgetxattr(p.c_str(), "user.x", buf, sizeof(buf));
      if (n >= 0) out << " user.x=" << std::string(buf, static_cast<size_t>(n));
      out << "\n";
      if (S_ISDIR(st.st_mode)) walk(p, rel + name + "/");
    }
  };
  walk(dir, "");
  return out.str();
}

class ReadOnlyView : public ::testing::Test {
 protected:
  void SetUp() override {
    PORTALFS_REQUIRE_MOUNT(m_);
    paths_.ro = m_.add_view("app", ViewKind::shared_ro, "ro");
    backing_ = m_.views().back().backing;
    paths_.data = m_.add_view("other", ViewKind::data, "v");
    // What the host put in the shared directory before the app came.
    write_file(backing_ + "/file", "readable\n");
    ASSERT_EQ(::lsetxattr((backing_ + "/file").c_str(), "user.x", "1", 1, 0), 0);
    ASSERT_EQ(::mkdir((backing_ + "/dir").c_str(), 0755), 0);
    ASSERT_EQ(::mkdir((backing_ + "/full").c_str(), 0755), 0);
    write_file(backing_ + "/full/child", "c");
    ASSERT_EQ(::symlink("file", (backing_ + "/link").c_str()), 0);
    write_file(paths_.data + "/source", "bytes from elsewhere");
    before_ = snapshot(backing_);
  }

  MountedFs m_;
  Paths paths_;
  std::string backing_;
  std::string before_;
};

struct Mutation {
  const char* name;
  std::function<Err(const Paths&)> op;
};

const Mutation kMutations[] = {
    {"OpenWriteOnly", [](const Paths& p) { return open_err(p("file"), O_WRONLY); }},
    {"OpenReadWrite", [](const Paths& p) { return open_err(p("file"), O_RDWR); }},
    {"OpenAppend", [](const Paths& p) { return open_err(p("file"), O_WRONLY | O_APPEND); }},
    {"OpenReadOnlyTrunc", [](const Paths& p) { return open_err(p("file"), O_RDONLY | O_TRUNC); }},
    {"OpenWriteOnlyDirect", [](const Paths& p) { return open_err(p("file"), O_WRONLY | O_DIRECT); }},
    {"OpenReadWriteDirect", [](const Paths& p) { return open_err(p("file"), O_RDWR | O_DIRECT); }},
    {"CreatNew", [](const Paths& p) { return open_err(p("new"), O_CREAT | O_WRONLY | O_TRUNC); }},
    {"CreatNewDirect",
     [](const Paths& p) { return open_err(p("new"), O_CREAT | O_EXCL | O_RDWR | O_DIRECT); }},
    {"CreatExisting",
     [](const Paths& p) { return open_err(p("file"), O_CREAT | O_WRONLY | O_TRUNC); }},
    {"CreateExclusiveReadOnly",
     [](const Paths& p) { return open_err(p("new"), O_CREAT | O_EXCL | O_RDONLY); }},
    {"MknodRegular", [](const Paths& p) { return sys(::mknod(p("new").c_str(), S_IFREG | 0644, 0)); }},
    {"MknodFifo", [](const Paths& p) { return sys(::mknod(p("new").c_str(), S_IFIFO | 0644, 0)); }},
    // The ranking of policy/access.hpp: EROFS comes before the EPERM a device node gets.
    {"MknodCharDevice",
     [](const Paths& p) { return sys(::mknod(p("new").c_str(), S_IFCHR | 0644, makedev(1, 3))); }},
    {"Mkdir", [](const Paths& p) { return sys(::mkdir(p("newdir").c_str(), 0755)); }},
    {"Symlink", [](const Paths& p) { return sys(::symlink("file", p("newlink").c_str())); }},
    {"LinkWithinTheView", [](const Paths& p) { return sys(::link(p("file").c_str(), p("hard").c_str())); }},
    {"Unlink", [](const Paths& p) { return sys(::unlink(p("file").c_str())); }},
    {"UnlinkSymlink", [](const Paths& p) { return sys(::unlink(p("link").c_str())); }},
    {"Rmdir", [](const Paths& p) { return sys(::rmdir(p("dir").c_str())); }},
    {"Rename", [](const Paths& p) { return sys(::rename(p("file").c_str(), p("renamed").c_str())); }},
    {"RenameOverExisting",
     [](const Paths& p) { return sys(::rename(p("file").c_str(), p("full/child").c_str())); }},
    {"RenameDir", [](const Paths& p) { return sys(::rename(p("dir").c_str(), p("dir2").c_str())); }},
    {"Chmod", [](const Paths& p) { return sys(::chmod(p("file").c_str(), 0600)); }},
    {"ChmodDir", [](const Paths& p) { return sys(::chmod(p("dir").c_str(), 0700)); }},
    {"Chown", [](const Paths& p) { return sys(::chown(p("file").c_str(), 1234, 1234)); }},
    {"Truncate", [](const Paths& p) { return sys(::truncate(p("file").c_str(), 0)); }},
    {"UtimensatExplicit",
     [](const Paths& p) {
       const timespec t[2] = {{1, 0}, {2, 0}};
       return sys(::utimensat(AT_FDCWD, p("file").c_str(), t, 0));
     }},
    {"UtimensatNow",
     [](const Paths& p) { return sys(::utimensat(AT_FDCWD, p("file").c_str(), nullptr, 0)); }},
    {"SetxattrUser",
     [](const Paths& p) { return sys(::setxattr(p("file").c_str(), "user.x", "2", 1, 0)); }},
    {"SetxattrNewUser",
     [](const Paths& p) { return sys(::setxattr(p("file").c_str(), "user.y", "2", 1, 0)); }},
    {"Removexattr", [](const Paths& p) { return sys(::removexattr(p("file").c_str(), "user.x")); }},
    // fallocate needs a writable fd, and getting one is already refused.
    {"FallocateNeedsAWritableOpen",
     [](const Paths& p) {
       auto fd = open_fd(p("file"), O_RDWR);
       if (!fd) return Err{errno};
       Err e = sys(::fallocate(fd.get(), 0, 0, 4096));
       fd.reset();
       return e;
     }},
    // copy_file_range into the view: the destination can't be opened for writing.
    {"CopyFileRangeInto",
     [](const Paths& p) {
       auto in = open_fd((p.data + "/source"), O_RDONLY);
       if (!in) return Err{-1};
       auto out = open_fd(p("file"), O_WRONLY);
       if (!out) {
         Err e{errno};
         in.reset();
         return e;
       }
       Err e = sys(::copy_file_range(in.get(), nullptr, out.get(), nullptr, 5, 0));
       in.reset();
       out.reset();
       return e;
     }},
};

void PrintTo(const Mutation& m, std::ostream* os) { *os << m.name; }

class ReadOnlyMutation : public ReadOnlyView, public ::testing::WithParamInterface<Mutation> {};

TEST_P(ReadOnlyMutation, IsErofsAndChangesNothing) {
  EXPECT_EQ(GetParam().op(paths_), Err{EROFS});
  EXPECT_EQ(snapshot(backing_), before_);
}

INSTANTIATE_TEST_SUITE_P(EveryMutation, ReadOnlyMutation, ::testing::ValuesIn(kMutations),
                         [](const ::testing::TestParamInfo<Mutation>& p) {
                           return std::string(p.param.name);
                         });

TEST_F(ReadOnlyView, ReadsWork) {
  EXPECT_EQ(read_file(paths_("file")), "readable\n");
  EXPECT_EQ(read_file(paths_("full/child")), "c");
  EXPECT_EQ(list_dir(paths_.ro),
            (std::vector<std::string>{".", "..", "dir", "file", "full", "link"}));
  struct stat st {};
  ASSERT_TRUE(Lstat(paths_("link"), &st));
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  char buf[PATH_MAX];
  ssize_t n = ::readlink(paths_("link").c_str(), buf, sizeof(buf));
  ASSERT_EQ(n, 4);
  EXPECT_EQ(std::string(buf, 4), "file");
  EXPECT_EQ(read_file(paths_("link")), "readable\n");  // followed by the kernel, inside the view
  n = ::getxattr(paths_("file").c_str(), "user.x", buf, sizeof(buf));
  ASSERT_EQ(n, 1);
  EXPECT_EQ(buf[0], '1');
  struct statvfs sv {};
  EXPECT_EQ(sys(::statvfs(paths_.ro.c_str(), &sv)), kOk);

  auto fd = open_fd(paths_("file"), O_RDONLY);
  ASSERT_TRUE(fd) << std::strerror(errno);
  EXPECT_EQ(pread_str(fd.get(), 4, 4), std::string("able"));
  EXPECT_EQ(::lseek(fd.get(), 0, SEEK_END), 9);
  EXPECT_EQ(sys(::fsync(fd.get())), kOk);  // durability ops are not mutations
  fd.reset();
  EXPECT_EQ(snapshot(backing_), before_);
}

// O_DIRECT changes how, not whether: a read-only open reads, and its fd cannot write.
TEST_F(ReadOnlyView, ODirectReadsWorkAndWritesAreRefused) {
  constexpr size_t kBlock = 4096;
  const AlignedBlock block = aligned_block(kBlock, 'x');
  auto fd = open_fd(paths_("file"), O_RDONLY | O_DIRECT);
  ASSERT_TRUE(fd) << std::strerror(errno);
  ASSERT_EQ(::pread(fd.get(), block.get(), kBlock, 0), 9) << std::strerror(errno);
  EXPECT_EQ(std::string(block.get(), 9), "readable\n");
  EXPECT_EQ(sys(::pwrite(fd.get(), block.get(), kBlock, 0)), Err{EBADF});
  fd.reset();
  EXPECT_EQ(snapshot(backing_), before_);
}

// A share turned read-only refuses the O_DIRECT writes of a file opened before, as any write
// (the daemon checks the grant on every write).
TEST_F(ReadOnlyView, ODirectWritesStopWhenTheShareTurnsReadOnly) {
  const std::string rw = m_.add_view("app", ViewKind::shared_squash, "rw");
  const std::string rw_backing = m_.views().back().backing;
  write_file(rw_backing + "/f", std::string(4096, '.'));
  constexpr size_t kBlock = 4096;
  const AlignedBlock block = aligned_block(kBlock, 'w');
  auto fd = open_fd(rw + "/f", O_RDWR | O_DIRECT);
  ASSERT_TRUE(fd) << std::strerror(errno);
  ASSERT_EQ(::pwrite(fd.get(), block.get(), kBlock, 0), static_cast<ssize_t>(kBlock))
      << std::strerror(errno);
  auto views = m_.views();
  views.back().access = policy::Access::read;
  m_.set_views(views);
  block.get()[0] = 'X';
  EXPECT_EQ(sys(::pwrite(fd.get(), block.get(), kBlock, 0)), Err{EROFS});
  fd.reset();
  EXPECT_EQ(read_file(rw_backing + "/f"), std::string(kBlock, 'w'));
}

TEST_F(ReadOnlyView, CopyFileRangeOutOfTheViewWorks) {
  // copy_into needs only the destination writable: the source is merely read.
  auto in = open_fd(paths_("file"), O_RDONLY);
  auto out = open_fd((paths_.data + "/copy"), O_CREAT | O_WRONLY, 0644);
  ASSERT_TRUE(in);
  ASSERT_TRUE(out);
  EXPECT_EQ(::copy_file_range(in.get(), nullptr, out.get(), nullptr, 8, 0), 8);
  in.reset();
  out.reset();
  EXPECT_EQ(read_file(m_.views()[1].backing + "/copy"), "readable");
}

// ---- the synthetic directories above the views ----

struct SynthCase {
  const char* name;
  const char* rel;    // below the mountpoint
  const char* child;  // an existing entry in it
};

const SynthCase kSynthDirs[] = {
    {"Mountpoint", "", "apps"},
    {"Apps", "/apps", "app"},
    {"App", "/apps/app", "shared"},
    {"Kind", "/apps/app/shared", "ro"},
};

void PrintTo(const SynthCase& c, std::ostream* os) { *os << c.name; }

class SyntheticDir : public ReadOnlyView, public ::testing::WithParamInterface<SynthCase> {
 protected:
  [[nodiscard]] std::string dir() const { return m_.mountpoint() + GetParam().rel; }
};

TEST_P(SyntheticDir, IsRootOwned0555) {
  struct stat st {};
  ASSERT_TRUE(Stat(dir(), &st));
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0555u);
  EXPECT_EQ(st.st_uid, 0u);
  EXPECT_EQ(st.st_gid, 0u);
}

TEST_P(SyntheticDir, RefusesEveryMutationWithErofs) {
  const std::string d = dir();
  EXPECT_EQ(sys(::mkdir((d + "/newdir").c_str(), 0755)), Err{EROFS});
  EXPECT_EQ(open_err(d + "/newfile", O_CREAT | O_WRONLY), Err{EROFS});
  EXPECT_EQ(sys(::mknod((d + "/newnode").c_str(), S_IFREG | 0644, 0)), Err{EROFS});
  EXPECT_EQ(sys(::symlink("x", (d + "/newlink").c_str())), Err{EROFS});
  const std::string child = d + "/" + GetParam().child;
  EXPECT_EQ(sys(::rmdir(child.c_str())), Err{EROFS});
  EXPECT_EQ(sys(::rename(child.c_str(), (d + "/moved").c_str())), Err{EROFS});
  EXPECT_EQ(sys(::chmod(d.c_str(), 0777)), Err{EROFS});
  EXPECT_EQ(sys(::chown(d.c_str(), 1000, 1000)), Err{EROFS});
  EXPECT_EQ(sys(::setxattr(d.c_str(), "user.x", "1", 1, 0)), Err{EROFS});
  // Nothing appeared or went away.
  auto names = list_dir(d);
  EXPECT_EQ(std::count(names.begin(), names.end(), GetParam().child), 1);
  EXPECT_EQ(std::count(names.begin(), names.end(), "newdir"), 0);
  struct stat st {};
  ASSERT_TRUE(Stat(d, &st));
  EXPECT_EQ(st.st_mode & 07777, 0555u);
}

TEST_P(SyntheticDir, NonRootCallerIsRefusedByTheMode) {
  // 0555 root-owned: the kernel itself refuses an unprivileged caller before the daemon.
  FsIds caller(1000, 1000);
  EXPECT_EQ(sys(::mkdir((dir() + "/newdir").c_str(), 0755)), Err{EACCES});
  EXPECT_EQ(open_err(dir() + "/newfile", O_CREAT | O_WRONLY), Err{EACCES});
}

INSTANTIATE_TEST_SUITE_P(EverySyntheticLevel, SyntheticDir, ::testing::ValuesIn(kSynthDirs),
                         [](const ::testing::TestParamInfo<SynthCase>& p) {
                           return std::string(p.param.name);
                         });

}  // namespace
}  // namespace portalfs::testutil
