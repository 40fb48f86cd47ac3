// SPDX-License-Identifier: MIT
// The ops without a mount: each op is called as the trampolines call it, with a Call made by
// hand, and its Result, the bytes and owners on disk and the invalidations it owes other views
// are checked. The same rules are checked through a real mount in tests/integration.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "fuse/filesystem.hpp"
#include "tests/fuse/view_spec.hpp"
#include "tests/testutil/temp_dir.hpp"

namespace portalfs::fuse {
namespace {

using policy::Access;
using policy::GrantKind;
using testutil::TempDir;

class Ops : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* d : {"alpha/docs", "beta/docs", "media"}) {
      std::filesystem::create_directories(storage_ / d);
    }
    views_ = {spec("alpha", GrantKind::data, "docs", "alpha/docs", Access::read_write),
              spec("alpha", GrantKind::shared, "media", "media", Access::read_write),
              spec("beta", GrantKind::data, "docs", "beta/docs", Access::read_write),
              spec("beta", GrantKind::shared, "media", "media", Access::read)};
    ASSERT_TRUE(fs_.set_views(views_).empty());
  }

  policy::ViewSpec spec(const std::string& app, GrantKind kind, const std::string& name,
                        const std::string& backing, Access access) {
    return testing::view_spec(storage_.path(), app, kind, name, backing, access);
  }

  // apps/<app>/<kind>/<name>, looked up from the root as the kernel would.
  fuse_ino_t view_root(const std::string& app, const std::string& kind, const std::string& name) {
    fuse_ino_t ino = FUSE_ROOT_ID;
    for (const std::string& part : {std::string("apps"), app, kind, name}) {
      auto e = fs_.lookup(call_, ino, part.c_str());
      EXPECT_TRUE(e) << part << ": " << e.error();
      if (!e) return 0;
      ino = e->ino;
    }
    return ino;
  }

  static bool has_entry_inval(const Call& call, fuse_ino_t dir, const std::string& name) {
    for (const auto& i : call.after) {
      if (i.node.ino == dir && i.name == name) return true;
    }
    return false;
  }

  TempDir storage_;
  Filesystem fs_;
  policy::ViewSpecs views_;
  Call call_{1000, 1000, false, {}};
};

TEST_F(Ops, MkdirInAReadOnlyViewIsErofsAndLeavesTheDiskAlone) {
  const fuse_ino_t media = view_root("beta", "shared", "media");
  auto r = fs_.mkdir(call_, media, "new", 0755);
  EXPECT_EQ(r.error(), EROFS);
  EXPECT_FALSE(std::filesystem::exists(storage_ / "media/new"));
  EXPECT_TRUE(call_.after.empty());
}

TEST_F(Ops, MkdirInADataViewIsOwnedByTheCaller) {
  const fuse_ino_t docs = view_root("alpha", "data", "docs");
  auto e = fs_.mkdir(call_, docs, "reports", 0750);
  ASSERT_TRUE(e) << e.error();
  struct stat st {};
  ASSERT_EQ(::stat((storage_ / "alpha/docs/reports").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_uid, 1000u);
  EXPECT_EQ(st.st_gid, 1000u);
  EXPECT_EQ(e->attr.st_uid, 1000u);
}

TEST_F(Ops, MknodAsksThePolicySpecialFilesOnlyInAnAppsOwnData) {
  auto shared = fs_.mknod(call_, view_root("alpha", "shared", "media"), "pipe", S_IFIFO | 0600, 0);
  EXPECT_EQ(shared.error(), EPERM);
  EXPECT_FALSE(std::filesystem::exists(storage_ / "media/pipe"));
  auto shared_device = fs_.mknod(call_, view_root("alpha", "shared", "media"), "null", S_IFCHR | 0600, 0);
  EXPECT_EQ(shared_device.error(), EPERM);
  EXPECT_FALSE(std::filesystem::exists(storage_ / "media/null"));
  // A device node in data: emulated (an empty regular file on disk, shown as the device).
  auto device = fs_.mknod(call_, view_root("alpha", "data", "docs"), "null", S_IFCHR | 0600, makedev(1, 3));
  ASSERT_TRUE(device) << device.error();
  EXPECT_TRUE(S_ISCHR(device->attr.st_mode));
  EXPECT_EQ(device->attr.st_rdev, makedev(1, 3));
  struct stat on_disk {};
  ASSERT_EQ(::lstat((storage_ / "alpha/docs/null").c_str(), &on_disk), 0);
  EXPECT_TRUE(S_ISREG(on_disk.st_mode));
  auto own = fs_.mknod(call_, view_root("alpha", "data", "docs"), "pipe", S_IFIFO | 0600, 0);
  ASSERT_TRUE(own) << own.error();
  struct stat st {};
  ASSERT_EQ(::lstat((storage_ / "alpha/docs/pipe").c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
}

TEST_F(Ops, RenameBetweenViewsIsExdevAndAboveTheViewsErofs) {
  const fuse_ino_t docs = view_root("alpha", "data", "docs");
  const fuse_ino_t media = view_root("alpha", "shared", "media");
  ASSERT_TRUE(fs_.mkdir(call_, docs, "a", 0755));
  EXPECT_EQ(fs_.rename(call_, docs, "a", media, "a", 0).error(), EXDEV);
  auto data_dir = fs_.lookup(call_, FUSE_ROOT_ID, "apps");
  ASSERT_TRUE(data_dir);
  EXPECT_EQ(fs_.rename(call_, docs, "a", data_dir->ino, "a", 0).error(), EROFS);
  EXPECT_TRUE(std::filesystem::exists(storage_ / "alpha/docs/a"));
  ASSERT_TRUE(fs_.rename(call_, docs, "a", docs, "b", 0));
  EXPECT_TRUE(std::filesystem::exists(storage_ / "alpha/docs/b"));
}

TEST_F(Ops, ARevokedViewIsHidden) {
  const fuse_ino_t docs = view_root("beta", "data", "docs");
  ASSERT_TRUE(fs_.getattr(call_, docs, nullptr));
  views_.pop_back();
  views_.erase(views_.begin() + 2);  // beta loses its data view
  ASSERT_TRUE(fs_.set_views(views_).empty());
  EXPECT_EQ(fs_.getattr(call_, docs, nullptr).error(), ENOENT);
  EXPECT_EQ(fs_.mkdir(call_, docs, "x", 0755).error(), ENOENT);
  EXPECT_FALSE(std::filesystem::exists(storage_ / "beta/docs/x"));
}

TEST_F(Ops, ACreateAndWriteReachTheDiskAndOweTheOtherViewAnInvalidation) {
  const fuse_ino_t mine = view_root("alpha", "shared", "media");
  const fuse_ino_t theirs = view_root("beta", "shared", "media");
  fuse_file_info fi{};
  fi.flags = O_WRONLY | O_CREAT | O_EXCL;
  auto created = fs_.create(call_, mine, "photo.jpg", 0644, &fi);
  ASSERT_TRUE(created) << created.error();
  EXPECT_TRUE(has_entry_inval(call_, theirs, "photo.jpg"));
  EXPECT_FALSE(has_entry_inval(call_, mine, "photo.jpg"));  // the kernel knows its own change

  const std::string bytes = "JPEG";
  fuse_bufvec in{};
  in.count = 1;
  in.buf[0].size = bytes.size();
  in.buf[0].mem = const_cast<char*>(bytes.data());
  auto written = fs_.write_buf(call_, created->entry.ino, &in, 0, &created->fi);
  ASSERT_TRUE(written) << written.error();
  EXPECT_EQ(written->size, bytes.size());
  ASSERT_TRUE(fs_.release(call_, created->entry.ino, &created->fi));

  std::ifstream f(storage_ / "media/photo.jpg");
  std::string on_disk((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_EQ(on_disk, bytes);
  struct stat st {};
  ASSERT_EQ(::stat((storage_ / "media/photo.jpg").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1000u);
}

TEST_F(Ops, AWriteThroughAViewTurnedReadOnlyIsErofs) {
  const fuse_ino_t media = view_root("alpha", "shared", "media");
  fuse_file_info fi{};
  fi.flags = O_WRONLY | O_CREAT;
  auto created = fs_.create(call_, media, "f", 0644, &fi);
  ASSERT_TRUE(created);
  views_[1].access = Access::read;
  ASSERT_TRUE(fs_.set_views(views_).empty());
  char byte = 'x';
  fuse_bufvec in{};
  in.count = 1;
  in.buf[0].size = 1;
  in.buf[0].mem = &byte;
  EXPECT_EQ(fs_.write_buf(call_, created->entry.ino, &in, 0, &created->fi).error(), EROFS);
  ASSERT_TRUE(fs_.release(call_, created->entry.ino, &created->fi));
  EXPECT_EQ(std::filesystem::file_size(storage_ / "media/f"), 0u);
}

TEST_F(Ops, ReaddirListsTheBackingDirectory) {
  std::ofstream(storage_ / "alpha/docs/letter.txt") << "x";
  auto listing = fs_.readdir(call_, view_root("alpha", "data", "docs"), 4096, 0, nullptr, false);
  ASSERT_TRUE(listing) << listing.error();
  const std::string bytes(listing->data.begin(), listing->data.end());
  EXPECT_NE(bytes.find("letter.txt"), std::string::npos);
  auto above = fs_.readdir(call_, FUSE_ROOT_ID, 4096, 0, nullptr, false);
  ASSERT_TRUE(above);
  const std::string root(above->data.begin(), above->data.end());
  EXPECT_NE(root.find("apps"), std::string::npos);
}

TEST_F(Ops, XattrsOutsideTheUserNamespaceAreNotThere) {
  const fuse_ino_t docs = view_root("alpha", "data", "docs");
  ASSERT_TRUE(fs_.setxattr(call_, docs, "user.tag", "v", 1, 0));
  EXPECT_EQ(fs_.setxattr(call_, docs, "trusted.x", "v", 1, 0).error(), EPERM);
  auto size = fs_.getxattr(call_, docs, "user.tag", 0);
  ASSERT_TRUE(size);
  EXPECT_TRUE(size->size_only);
  EXPECT_EQ(size->size, 1u);
  EXPECT_EQ(fs_.getxattr(call_, docs, "trusted.x", 16).error(), ENODATA);
}

// Issue #12: a view whose store is offline answers EIO for every op, on inodes the kernel
// already holds too, writes nothing, and serves again once its store is back.
TEST_F(Ops, AnOfflineStoreAnswersEioAndComesBack) {
  const fuse_ino_t docs = view_root("alpha", "data", "docs");
  auto sub = fs_.mkdir(call_, docs, "sub", 0755);
  ASSERT_TRUE(sub) << sub.error();
  for (auto& v : views_) {
    v.offline = true;
    v.store_epoch = 1;
  }
  ASSERT_TRUE(fs_.set_views(views_).empty());
  EXPECT_EQ(fs_.getattr(call_, docs, nullptr).error(), EIO);
  EXPECT_EQ(fs_.getattr(call_, sub->ino, nullptr).error(), EIO);
  EXPECT_EQ(fs_.lookup(call_, docs, "sub").error(), EIO);
  EXPECT_EQ(fs_.readdir(call_, docs, 4096, 0, nullptr, false).error(), EIO);
  EXPECT_EQ(fs_.mkdir(call_, sub->ino, "new", 0755).error(), EIO);
  EXPECT_FALSE(std::filesystem::exists(storage_ / "alpha/docs/sub/new"));
  // Still listed above, and looking it up is an error, not an absence.
  auto app = fs_.lookup(call_, FUSE_ROOT_ID, "apps");
  ASSERT_TRUE(app);
  auto alpha = fs_.lookup(call_, app->ino, "alpha");
  ASSERT_TRUE(alpha);
  auto data = fs_.lookup(call_, alpha->ino, "data");
  ASSERT_TRUE(data);
  EXPECT_EQ(fs_.lookup(call_, data->ino, "docs").error(), EIO);

  for (auto& v : views_) {
    v.offline = false;
    v.store_epoch = 2;
  }
  ASSERT_TRUE(fs_.set_views(views_).empty());
  EXPECT_TRUE(fs_.getattr(call_, docs, nullptr));
  EXPECT_TRUE(fs_.getattr(call_, sub->ino, nullptr));
  auto made = fs_.mkdir(call_, sub->ino, "new", 0755);
  EXPECT_TRUE(made) << made.error();
  EXPECT_TRUE(std::filesystem::exists(storage_ / "alpha/docs/sub/new"));
  EXPECT_NE(view_root("alpha", "data", "docs"), 0u);
}

}  // namespace
}  // namespace portalfs::fuse
