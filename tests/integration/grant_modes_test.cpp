// SPDX-License-Identifier: MIT
// Grant modes that protect what others made (policy/grant.hpp: create-only, no-delete,
// own-files) and the provenance they decide by (policy/provenance.hpp), through a real mount.
// One backing directory is shared by app "owner" (read-write) and the app under test; the
// host puts files there too (made by no app). Every check is an errno and the bytes on disk.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "policy/provenance.hpp"
#include "tests/integration/fs_helpers.hpp"
#include "tests/integration/mounted_fs.hpp"

namespace portalfs::testutil {
namespace {

using policy::Access;

class GrantModes : public ::testing::Test {
 protected:
  void SetUp() override {
    PORTALFS_REQUIRE_MOUNT(m_);
    backing_ = m_.storage() + "/media";
    std::filesystem::create_directories(backing_ + "/albums");
    write_file(backing_ + "/orig.jpg", "ORIGINAL");  // the user's, put there on the host
  }

  // Serves the share to "owner" read-write and to "app" with `mode` (and `sidecars`).
  void serve(Access mode, const std::vector<std::string>& sidecars = {}) {
    policy::ViewSpecs views{m_.shared_view("owner", "media", backing_, Access::read_write),
                            m_.shared_view("app", "media", backing_, mode)};
    views[1].sidecars = sidecars;
    m_.set_views(views);
    owner_ = m_.path(views[0]);
    app_ = m_.path(views[1]);
  }
  [[nodiscard]] std::string app(const std::string& rel) const { return app_ + "/" + rel; }
  [[nodiscard]] std::string owner(const std::string& rel) const { return owner_ + "/" + rel; }
  [[nodiscard]] std::string disk(const std::string& rel) const { return backing_ + "/" + rel; }

  static Err lstat_err(const std::string& path) {
    struct stat st {};
    return sys(::lstat(path.c_str(), &st));
  }
  static Err make(const std::string& path, const std::string& content) {
    auto fd = open_fd(path, O_CREAT | O_EXCL | O_WRONLY, 0644);
    if (!fd) return Err{errno};
    return write_all(fd.get(), content) ? kOk : Err{errno};
  }
  static std::string xattr(const std::string& path, const char* name) {
    char buf[256];
    ssize_t n = ::lgetxattr(path.c_str(), name, buf, sizeof(buf));
    return n < 0 ? std::string("<") + std::to_string(errno) + ">" : std::string(buf, static_cast<size_t>(n));
  }
  static std::string no_xattr() { return "<" + std::to_string(ENODATA) + ">"; }
  static long rename2(const std::string& from, const std::string& to, unsigned flags) {
    return ::syscall(SYS_renameat2, AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), flags);
  }

  MountedFs m_;
  std::string backing_, owner_, app_;
};

TEST_F(GrantModes, ProvenanceIsRecordedOnTheBackingFileAndInvisibleToApps) {
  serve(Access::read_write);
  ASSERT_EQ(make(owner("by-owner"), "o"), kOk);
  ASSERT_EQ(sys(::mkdir(app("dir-by-app").c_str(), 0755)), kOk);
  ASSERT_EQ(sys(::symlink("target", app("link-by-app").c_str())), kOk);
  EXPECT_EQ(xattr(disk("by-owner"), policy::kCreatedByXattr), "owner");
  EXPECT_EQ(xattr(disk("dir-by-app"), policy::kCreatedByXattr), "app");
  EXPECT_EQ(xattr(disk("link-by-app"), policy::kCreatedByXattr), "app");
  EXPECT_EQ(xattr(disk("orig.jpg"), policy::kCreatedByXattr), no_xattr());
  EXPECT_EQ(xattr(disk("by-owner"), policy::kChangedByXattr), no_xattr());

  // Changed by another app: recorded at close; by its creator again: the mark goes.
  {
    auto fd = open_fd(app("by-owner"), O_WRONLY | O_APPEND);
    ASSERT_TRUE(fd) << std::strerror(errno);
    ASSERT_TRUE(write_all(fd.get(), "+app"));
  }
  EXPECT_EQ(xattr(disk("by-owner"), policy::kChangedByXattr), "app");
  ASSERT_EQ(sys(::chmod(owner("by-owner").c_str(), 0600)), kOk);
  EXPECT_EQ(xattr(disk("by-owner"), policy::kChangedByXattr), no_xattr());
  ASSERT_EQ(sys(::chmod(app("orig.jpg").c_str(), 0600)), kOk);
  EXPECT_EQ(xattr(disk("orig.jpg"), policy::kChangedByXattr), "app");

  // Neither seen nor forged through a view.
  char buf[64];
  EXPECT_EQ(sys(::getxattr(app("by-owner").c_str(), policy::kCreatedByXattr, buf, sizeof(buf))), Err{ENODATA});
  EXPECT_EQ(sys(::setxattr(app("orig.jpg").c_str(), policy::kCreatedByXattr, "app", 3, 0)), Err{EPERM});
  EXPECT_EQ(sys(::removexattr(owner("by-owner").c_str(), policy::kCreatedByXattr)), Err{EPERM});
  ssize_t len = ::listxattr(app("by-owner").c_str(), buf, sizeof(buf));
  EXPECT_EQ(len, 0) << std::string(buf, len > 0 ? static_cast<size_t>(len) : 0);
  EXPECT_EQ(xattr(disk("orig.jpg"), policy::kCreatedByXattr), no_xattr());
  EXPECT_EQ(xattr(disk("by-owner"), policy::kCreatedByXattr), "owner");
}

TEST_F(GrantModes, NoDeleteRefusesRemovingRenamingAndTruncatingOthersFiles) {
  serve(Access::no_delete);
  ASSERT_EQ(make(owner("theirs"), "THEIRS"), kOk);
  ASSERT_EQ(sys(::mkdir(owner("their-dir").c_str(), 0755)), kOk);
  ASSERT_EQ(make(app("mine"), "MINE"), kOk);

  EXPECT_EQ(sys(::unlink(app("orig.jpg").c_str())), Err{EPERM});
  EXPECT_EQ(sys(::unlink(app("theirs").c_str())), Err{EPERM});
  EXPECT_EQ(sys(::rmdir(app("their-dir").c_str())), Err{EPERM});
  EXPECT_EQ(sys(::rename(app("orig.jpg").c_str(), app("moved.jpg").c_str())), Err{EPERM});
  EXPECT_EQ(sys(::rename(app("mine").c_str(), app("orig.jpg").c_str())), Err{EPERM});  // over
  EXPECT_EQ(sys(rename2(app("mine"), app("orig.jpg"), RENAME_EXCHANGE)), Err{EPERM});
  EXPECT_EQ(open_err(app("orig.jpg"), O_WRONLY | O_TRUNC), Err{EPERM});
  EXPECT_EQ(sys(::truncate(app("orig.jpg").c_str(), 0)), Err{EPERM});
  EXPECT_EQ(sys(::truncate(app("orig.jpg").c_str(), 3)), Err{EPERM});
  EXPECT_EQ(read_file(disk("orig.jpg")), "ORIGINAL");
  EXPECT_EQ(read_file(disk("theirs")), "THEIRS");
  EXPECT_EQ(read_file(disk("mine")), "MINE");
  EXPECT_EQ(lstat_err(disk("their-dir")), kOk);
  EXPECT_EQ(lstat_err(disk("moved.jpg")), Err{ENOENT});

  // Everything else of read-write stays: writing others' files, growing them, chmod.
  {
    auto fd = open_fd(app("orig.jpg"), O_WRONLY | O_APPEND);
    ASSERT_TRUE(fd) << std::strerror(errno);
    ASSERT_TRUE(write_all(fd.get(), "+"));
  }
  EXPECT_EQ(sys(::truncate(app("orig.jpg").c_str(), 20)), kOk);
  EXPECT_EQ(sys(::chmod(app("theirs").c_str(), 0640)), kOk);
  // ...and its own files are its own.
  EXPECT_EQ(sys(::rename(app("mine").c_str(), app("mine2").c_str())), kOk);
  EXPECT_EQ(sys(::truncate(app("mine2").c_str(), 1)), kOk);
  EXPECT_EQ(sys(::unlink(app("mine2").c_str())), kOk);
  EXPECT_EQ(lstat_err(disk("mine2")), Err{ENOENT});
  ASSERT_EQ(sys(::mkdir(app("my-dir").c_str(), 0755)), kOk);
  EXPECT_EQ(sys(::rmdir(app("my-dir").c_str())), kOk);
  EXPECT_EQ(lstat_err(disk("orig.jpg")), kOk);
}

TEST_F(GrantModes, OwnFilesReadsEverythingAndChangesOnlyWhatItMade) {
  serve(Access::own_files);
  ASSERT_EQ(make(owner("theirs"), "THEIRS"), kOk);
  EXPECT_EQ(read_file(app("orig.jpg")), "ORIGINAL");
  EXPECT_EQ(read_file(app("theirs")), "THEIRS");

  EXPECT_EQ(open_err(app("orig.jpg"), O_WRONLY), Err{EPERM});
  EXPECT_EQ(open_err(app("theirs"), O_RDWR), Err{EPERM});
  EXPECT_EQ(sys(::unlink(app("theirs").c_str())), Err{EPERM});
  EXPECT_EQ(sys(::chmod(app("orig.jpg").c_str(), 0600)), Err{EPERM});
  EXPECT_EQ(sys(::setxattr(app("orig.jpg").c_str(), "user.tag", "x", 1, 0)), Err{EPERM});
  EXPECT_EQ(sys(::link(app("theirs").c_str(), app("theirs-link").c_str())), Err{EPERM});
  EXPECT_EQ(sys(::rename(app("theirs").c_str(), app("albums/theirs").c_str())), Err{EPERM});
  EXPECT_EQ(read_file(disk("theirs")), "THEIRS");
  EXPECT_EQ(read_file(disk("orig.jpg")), "ORIGINAL");

  // Adding to a directory it did not make is what the mode is for.
  ASSERT_EQ(make(app("albums/mine"), "MINE"), kOk);
  {
    auto fd = open_fd(app("albums/mine"), O_WRONLY | O_APPEND);
    ASSERT_TRUE(fd) << std::strerror(errno);
    ASSERT_TRUE(write_all(fd.get(), "+more"));
  }
  EXPECT_EQ(sys(::chmod(app("albums/mine").c_str(), 0600)), kOk);
  EXPECT_EQ(sys(::setxattr(app("albums/mine").c_str(), "user.tag", "x", 1, 0)), kOk);
  EXPECT_EQ(read_file(disk("albums/mine")), "MINE+more");
  EXPECT_EQ(sys(::unlink(app("albums/mine").c_str())), kOk);
  EXPECT_EQ(lstat_err(disk("albums/mine")), Err{ENOENT});
}

TEST_F(GrantModes, CreateOnlyIsADropBox) {
  serve(Access::create_only);
  ASSERT_EQ(make(owner("theirs"), "THEIRS"), kOk);

  // Others' files are not there for it; directories are, to drop into.
  EXPECT_EQ(lstat_err(app("orig.jpg")), Err{ENOENT});
  EXPECT_EQ(lstat_err(app("theirs")), Err{ENOENT});
  EXPECT_EQ(open_err(app("theirs"), O_RDONLY), Err{ENOENT});
  EXPECT_EQ(lstat_err(app("albums")), kOk);

  // It creates, writes while it holds the file open, and may read back what it made.
  {
    auto fd = open_fd(app("albums/upload.bin"), O_CREAT | O_WRONLY, 0644);
    ASSERT_TRUE(fd) << std::strerror(errno);
    ASSERT_TRUE(write_all(fd.get(), "UPLOADED!"));
    EXPECT_EQ(sys(::ftruncate(fd.get(), 8)), kOk);
  }
  ASSERT_EQ(sys(::mkdir(app("my-dir").c_str(), 0755)), kOk);
  EXPECT_EQ(read_file(disk("albums/upload.bin")), "UPLOADED");
  EXPECT_EQ(read_file(app("albums/upload.bin")), "UPLOADED");
  std::vector<std::string> listed = list_dir(app_);
  EXPECT_EQ(listed, (std::vector<std::string>{".", "..", "albums", "my-dir"}));
  EXPECT_EQ(list_dir(app("albums")), (std::vector<std::string>{".", "..", "upload.bin"}));

  // Once closed, a drop is sealed: no rewriting, no truncation.
  EXPECT_EQ(open_err(app("albums/upload.bin"), O_WRONLY), Err{EPERM});
  EXPECT_EQ(open_err(app("albums/upload.bin"), O_RDONLY | O_TRUNC), Err{EPERM});
  EXPECT_EQ(sys(::truncate(app("albums/upload.bin").c_str(), 0)), Err{EPERM});
  EXPECT_EQ(read_file(disk("albums/upload.bin")), "UPLOADED");

  // A name another app holds can't be taken over: the create fails, their bytes stay.
  EXPECT_EQ(open_err(app("theirs"), O_CREAT | O_WRONLY | O_TRUNC), Err{EEXIST});
  EXPECT_EQ(read_file(disk("theirs")), "THEIRS");
  // Nor removed or renamed over, even by a name it knows.
  EXPECT_EQ(sys(::unlink(app("theirs").c_str())), Err{ENOENT});
  EXPECT_EQ(sys(::rename(app("albums/upload.bin").c_str(), app("theirs").c_str())), Err{EPERM});
  EXPECT_EQ(read_file(disk("theirs")), "THEIRS");
  EXPECT_EQ(sys(::rmdir(app("albums").c_str())), Err{EPERM});

  // Its own are its own to move and remove.
  EXPECT_EQ(sys(::rename(app("albums/upload.bin").c_str(), app("albums/done.bin").c_str())), kOk);
  EXPECT_EQ(sys(::unlink(app("albums/done.bin").c_str())), kOk);
  EXPECT_EQ(sys(::rmdir(app("my-dir").c_str())), kOk);
  EXPECT_EQ(lstat_err(disk("albums")), kOk);
}

TEST_F(GrantModes, ProvenanceSurvivesARestartAndARename) {
  serve(Access::read_write);
  ASSERT_EQ(make(owner("theirs"), "THEIRS"), kOk);
  ASSERT_EQ(make(app("mine"), "MINE"), kOk);
  // Renamed through a view and moved on the host: provenance belongs to the inode.
  ASSERT_EQ(sys(::rename(owner("theirs").c_str(), owner("albums/theirs").c_str())), kOk);
  ASSERT_EQ(sys(::rename(disk("mine").c_str(), disk("albums/mine").c_str())), kOk);

  // The app's grant turns own-files, and the daemon restarts.
  auto views = m_.views();
  views[1].access = Access::own_files;
  m_.set_views(views);
  ASSERT_TRUE(m_.restart().empty());
  EXPECT_EQ(xattr(disk("albums/theirs"), policy::kCreatedByXattr), "owner");
  EXPECT_EQ(sys(::unlink(app("albums/theirs").c_str())), Err{EPERM});
  EXPECT_EQ(read_file(disk("albums/theirs")), "THEIRS");
  EXPECT_EQ(sys(::unlink(app("albums/mine").c_str())), kOk);
  EXPECT_EQ(lstat_err(disk("albums/mine")), Err{ENOENT});
}

TEST_F(GrantModes, AModeChangeAppliesAtOnce) {
  serve(Access::read_write);
  ASSERT_EQ(make(owner("a"), "A"), kOk);
  ASSERT_EQ(make(owner("b"), "B"), kOk);
  EXPECT_EQ(sys(::unlink(app("a").c_str())), kOk);
  auto views = m_.views();
  views[1].access = Access::no_delete;
  m_.set_views(views);
  EXPECT_EQ(sys(::unlink(app("b").c_str())), Err{EPERM});
  EXPECT_EQ(read_file(disk("b")), "B");
}

TEST_F(GrantModes, AReadGrantWithSidecarsWritesItsSidecarsAndNothingElse) {
  serve(Access::read, {"*.xmp", "*.nfo"});
  write_file(disk("user.xmp"), "USER XMP");  // a sidecar the user's own tool wrote

  // New files named like a sidecar, next to the originals; nothing else.
  ASSERT_EQ(make(app("orig.xmp"), "v1"), kOk);
  EXPECT_EQ(sys(::mknod(app("albums/show.nfo").c_str(), S_IFREG | 0644, 0)), kOk);
  EXPECT_EQ(read_file(disk("orig.xmp")), "v1");
  EXPECT_EQ(xattr(disk("orig.xmp"), policy::kCreatedByXattr), "app");
  EXPECT_EQ(make(app("note.txt"), "x"), Err{EROFS});
  EXPECT_EQ(make(app(".hidden.xmp"), "x"), Err{EROFS});  // * does not match a leading dot
  EXPECT_EQ(sys(::mkdir(app("d.xmp").c_str(), 0755)), Err{EROFS});
  EXPECT_EQ(sys(::symlink("orig.jpg", app("l.xmp").c_str())), Err{EROFS});
  EXPECT_EQ(sys(::link(app("orig.jpg").c_str(), app("l2.xmp").c_str())), Err{EROFS});

  // Its own sidecars are its own: rewritten, renamed to another sidecar's name, removed.
  {
    auto fd = open_fd(app("orig.xmp"), O_WRONLY | O_TRUNC);
    ASSERT_TRUE(fd) << std::strerror(errno);
    ASSERT_TRUE(write_all(fd.get(), "v2"));
  }
  EXPECT_EQ(read_file(disk("orig.xmp")), "v2");
  EXPECT_EQ(sys(::chmod(app("orig.xmp").c_str(), 0600)), kOk);
  EXPECT_EQ(sys(::setxattr(app("orig.xmp").c_str(), "user.rating", "5", 1, 0)), kOk);
  EXPECT_EQ(sys(::rename(app("orig.xmp").c_str(), app("renamed.xmp").c_str())), kOk);
  EXPECT_EQ(sys(::rename(app("renamed.xmp").c_str(), app("renamed.txt").c_str())), Err{EROFS});
  EXPECT_EQ(sys(::rename(app("renamed.xmp").c_str(), app("user.xmp").c_str())), Err{EROFS});
  EXPECT_EQ(sys(::unlink(app("renamed.xmp").c_str())), kOk);
  EXPECT_EQ(lstat_err(disk("renamed.xmp")), Err{ENOENT});

  // Sidecars others made, and the originals, stay read-only.
  EXPECT_EQ(open_err(app("user.xmp"), O_WRONLY), Err{EROFS});
  EXPECT_EQ(open_err(app("user.xmp"), O_CREAT | O_WRONLY | O_TRUNC), Err{EROFS});
  EXPECT_EQ(sys(::unlink(app("user.xmp").c_str())), Err{EROFS});
  EXPECT_EQ(sys(::rename(app("user.xmp").c_str(), app("user2.xmp").c_str())), Err{EROFS});
  EXPECT_EQ(sys(::chmod(app("user.xmp").c_str(), 0600)), Err{EROFS});
  EXPECT_EQ(sys(::unlink(app("orig.jpg").c_str())), Err{EROFS});
  EXPECT_EQ(open_err(app("orig.jpg"), O_WRONLY), Err{EROFS});
  EXPECT_EQ(read_file(disk("user.xmp")), "USER XMP");
  EXPECT_EQ(read_file(disk("orig.jpg")), "ORIGINAL");
}

}  // namespace
}  // namespace portalfs::testutil
