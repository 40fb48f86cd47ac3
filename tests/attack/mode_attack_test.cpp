// SPDX-License-Identifier: MIT
// Attacks on the grant modes that protect others' files (issue #13): app A holds a share in
// create-only, no-delete or own-files mode; the user's files are there (put on the host) and
// app "owner" adds its own. A works as root in its container, so nothing below is refused by
// file permissions: every refusal is the daemon's. Each attack checks its errno, and TearDown
// checks that the bytes, names and provenance of everything A did not make are unchanged.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <utility>

#include "policy/provenance.hpp"
#include "tests/attack/attack_fixture.hpp"

namespace portalfs::testutil {
namespace {

using policy::Access;

class ModeAttack : public ::testing::Test {
 protected:
  void SetUp() override {
    PORTALFS_REQUIRE_MOUNT(m_);
    backing_ = m_.storage() + "/media";
    std::filesystem::create_directories(backing_ + "/albums");
    write_file(backing_ + "/orig.jpg", "ORIGINAL");
    write_file(backing_ + "/albums/photo.jpg", "PHOTO");
  }
  void TearDown() override {
    if (!before_.empty()) {
      EXPECT_EQ(snapshot_tree(backing_ + "/albums"), before_) << "the user's files changed";
    }
    if (!orig_.empty()) {
      EXPECT_EQ(read_file(backing_ + "/orig.jpg"), orig_);
    }
  }

  // Serves the share to "owner" (read-write) and to "a" in `mode`, and snapshots what A must
  // not change: the user's albums and orig.jpg.
  void serve(Access mode) {
    const policy::ViewSpecs views{m_.shared_view("owner", "media", backing_, Access::read_write),
                                  m_.shared_view("a", "media", backing_, mode)};
    m_.set_views(views);
    owner_ = m_.path(views[0]);
    a_ = m_.path(views[1]);
    before_ = snapshot_tree(backing_ + "/albums");
    orig_ = read_file(backing_ + "/orig.jpg");
  }
  [[nodiscard]] std::string a(const std::string& rel) const { return a_ + "/" + rel; }
  [[nodiscard]] std::string disk(const std::string& rel) const { return backing_ + "/" + rel; }
  static Err make(const std::string& path, const std::string& content) {
    auto fd = open_fd(path, O_CREAT | O_EXCL | O_WRONLY, 0644);
    if (!fd) return Err{errno};
    return write_all(fd.get(), content) ? kOk : Err{errno};
  }

  MountedFs m_;
  std::string backing_, owner_, a_, before_, orig_;
};

TEST_F(ModeAttack, CreateOnlyCannotReadAnotherFileByDotDotSymlinkOrOPathReopen) {
  serve(Access::create_only);
  // By name, through "..", through a symlink it makes (the kernel resolves it in A's view).
  EXPECT_EQ(open_err(a("albums/photo.jpg"), O_RDONLY), Err{ENOENT});
  EXPECT_EQ(open_err(a("albums/../orig.jpg"), O_RDONLY), Err{ENOENT});
  ASSERT_EQ(sys(::symlink("albums/photo.jpg", a("peek").c_str())), kOk);
  EXPECT_EQ(open_err(a("peek"), O_RDONLY), Err{ENOENT});
  // An O_PATH fd of the directory, and the file reopened relative to it or through /proc.
  auto dir = open_fd(a("albums"), O_PATH | O_DIRECTORY);
  ASSERT_TRUE(dir) << std::strerror(errno);
  EXPECT_EQ(sys(::openat(dir.get(), "photo.jpg", O_PATH)), Err{ENOENT});
  const std::string via_proc = "/proc/self/fd/" + std::to_string(dir.get()) + "/photo.jpg";
  EXPECT_EQ(open_err(via_proc, O_RDONLY), Err{ENOENT});
  // Its own file, held by O_PATH, can't be reopened for writing once closed either.
  ASSERT_EQ(make(a("mine"), "MINE"), kOk);
  auto own = open_fd(a("mine"), O_PATH);
  ASSERT_TRUE(own) << std::strerror(errno);
  EXPECT_EQ(open_err("/proc/self/fd/" + std::to_string(own.get()), O_WRONLY), Err{EPERM});
  EXPECT_EQ(read_file(disk("mine")), "MINE");
}

TEST_F(ModeAttack, CreateOnlyCannotTakeOverAnotherFileByCreateHardLinkOrRename) {
  serve(Access::create_only);
  // O_CREAT|O_TRUNC on a name it can't see: the create is exclusive.
  EXPECT_EQ(open_err(a("albums/photo.jpg"), O_CREAT | O_WRONLY | O_TRUNC), Err{EEXIST});
  // mknod and mkdir over it, a hard link from it, a rename onto or away from it.
  EXPECT_EQ(sys(::mknod(a("albums/photo.jpg").c_str(), S_IFREG | 0644, 0)), Err{EEXIST});
  EXPECT_EQ(sys(::link(a("albums/photo.jpg").c_str(), a("stolen").c_str())), Err{ENOENT});
  ASSERT_EQ(make(a("decoy"), "DECOY"), kOk);
  EXPECT_EQ(sys(::rename(a("decoy").c_str(), a("albums/photo.jpg").c_str())), Err{EPERM});
  // (An exchange needs both names: the kernel's lookup finds none to exchange with.)
  EXPECT_EQ(sys(::syscall(SYS_renameat2, AT_FDCWD, a("decoy").c_str(), AT_FDCWD,
                          a("albums/photo.jpg").c_str(), RENAME_EXCHANGE)),
            Err{ENOENT});
  EXPECT_EQ(sys(::rename(a("albums").c_str(), a("moved").c_str())), Err{EPERM});
  EXPECT_EQ(sys(::rmdir(a("albums").c_str())), Err{EPERM});
}

TEST_F(ModeAttack, NoDeleteCannotDestroyThroughHardLinksTruncationOrRenameOver) {
  serve(Access::no_delete);
  // A hard link of the user's file gives A a name, not the file: the link can't be removed
  // or truncated either, since the inode is not A's.
  ASSERT_EQ(sys(::link(a("orig.jpg").c_str(), a("link.jpg").c_str())), kOk);
  EXPECT_EQ(sys(::unlink(a("link.jpg").c_str())), Err{EPERM});
  EXPECT_EQ(open_err(a("link.jpg"), O_WRONLY | O_TRUNC), Err{EPERM});
  EXPECT_EQ(open_err(a("albums/photo.jpg"), O_CREAT | O_RDWR | O_TRUNC), Err{EPERM});
  EXPECT_EQ(sys(::truncate(a("albums/photo.jpg").c_str(), 1)), Err{EPERM});
  {
    auto fd = open_fd(a("orig.jpg"), O_RDWR);  // allowed: no-delete writes
    ASSERT_TRUE(fd) << std::strerror(errno);
    EXPECT_EQ(sys(::ftruncate(fd.get(), 0)), Err{EPERM});
  }
  ASSERT_EQ(make(a("mine"), "MINE"), kOk);
  EXPECT_EQ(sys(::rename(a("mine").c_str(), a("albums/photo.jpg").c_str())), Err{EPERM});
  EXPECT_EQ(sys(::rename(a("albums/photo.jpg").c_str(), a("albums/photo.jpg.bak").c_str())), Err{EPERM});
  EXPECT_EQ(sys(::rename(a("albums").c_str(), a("albums.old").c_str())), Err{EPERM});
  EXPECT_EQ(read_file(disk("link.jpg")), "ORIGINAL");
}

TEST_F(ModeAttack, OwnFilesRenameRacesNeverDeleteAnotherFile) {
  serve(Access::own_files);
  // One thread shuffles A's own files through the names around the user's file; the other
  // keeps trying to delete, rename and truncate whatever is under the user's names. Every
  // decision is made on the inode found at the name, so no interleaving reaches the photo.
  ASSERT_EQ(make(a("x"), "X"), kOk);
  std::atomic<bool> stop{false};
  std::thread shuffler([&] {
    while (!stop.load()) {
      ::rename(a("x").c_str(), a("y").c_str());
      ::rename(a("y").c_str(), a("x").c_str());
    }
  });
  int deleted = 0;
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (std::chrono::steady_clock::now() < end) {
    for (const char* name : {"albums/photo.jpg", "orig.jpg"}) {
      if (::unlink(a(name).c_str()) == 0) ++deleted;
      if (::rename(a(name).c_str(), a("y").c_str()) == 0) ++deleted;
      if (::truncate(a(name).c_str(), 0) == 0) ++deleted;
    }
  }
  stop = true;
  shuffler.join();
  EXPECT_EQ(deleted, 0);
  EXPECT_EQ(::getxattr(disk("albums/photo.jpg").c_str(), policy::kCreatedByXattr, nullptr, 0), -1);
}

TEST_F(ModeAttack, ProvenanceCannotBeForgedThroughAViewOrACreateOfAnExistingName) {
  serve(Access::own_files);
  ASSERT_EQ(make(owner_ + "/theirs", "THEIRS"), kOk);
  // The trusted.* names are out of every view's reach; user.* look-alikes change nothing.
  EXPECT_EQ(sys(::setxattr(a("theirs").c_str(), policy::kCreatedByXattr, "a", 1, 0)), Err{EPERM});
  EXPECT_EQ(sys(::setxattr(a("albums/photo.jpg").c_str(), "user.portalfs.created_by", "a", 1, 0)), Err{EPERM});
  ASSERT_EQ(make(a("mine"), "MINE"), kOk);
  EXPECT_EQ(sys(::setxattr(a("mine").c_str(), "user.portalfs.created_by", "owner", 5, 0)), kOk);
  EXPECT_EQ(sys(::unlink(a("theirs").c_str())), Err{EPERM});
  // A create racing for a name another view just made opens nothing as A's own.
  EXPECT_EQ(open_err(a("theirs"), O_CREAT | O_WRONLY), Err{EPERM});
  char who[16] = {};
  ASSERT_EQ(::getxattr(disk("theirs").c_str(), policy::kCreatedByXattr, who, sizeof(who)), 5);
  EXPECT_STREQ(who, "owner");
  EXPECT_EQ(read_file(disk("theirs")), "THEIRS");
}

}  // namespace
}  // namespace portalfs::testutil
