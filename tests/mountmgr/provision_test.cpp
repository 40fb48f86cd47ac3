// SPDX-License-Identifier: MIT
// Provisioning never creates or deletes anything outside the storage root: a symlink planted
// anywhere on the way is refused, never followed.

#include "mountmgr/provision.hpp"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/unique_fd.hpp"
#include "tests/testutil/temp_dir.hpp"

namespace portalfs::mountmgr {
namespace {

namespace fs = std::filesystem;
using testutil::read_file;
using testutil::TempDir;
using testutil::write_file;
using ::testing::HasSubstr;

struct stat stat_of(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
  return st;
}

bool is_empty_dir(const std::string& path) { return fs::is_directory(path) && fs::is_empty(path); }

class ProvisionTest : public ::testing::Test {
 protected:
  TempDir tmp;
  std::string root_path = tmp / "root";
  std::string outside = tmp / "outside";

  void SetUp() override {
    fs::create_directories(root_path);
    fs::create_directories(outside);
  }

  LeafSpec data_leaf(std::string version = "1.0") {
    LeafSpec leaf;
    leaf.owner = policy::Owner{1000, 1001};
    leaf.version_marker = std::move(version);
    return leaf;
  }

  // Expects ensure_dir to refuse, and nothing to appear outside the root.
  void expect_refused(const std::vector<std::string>& components) {
    StorageRoot root(root_path);
    try {
      ensure_dir(root, components, data_leaf());
      ADD_FAILURE() << "not refused";
    } catch (const ProvisionError& e) {
      EXPECT_THAT(e.what(), HasSubstr("refusing to follow it"));
    }
    EXPECT_TRUE(is_empty_dir(outside));
  }
};

TEST_F(ProvisionTest, CreatesNestedDataDirWithOwnerModeAndMarker) {
  StorageRoot root(root_path);
  const Ensured e = ensure_dir(root, data_dir_components("files", "data/documents"), data_leaf("1.2"));
  EXPECT_TRUE(e.created);
  const std::string dir = root_path + "/apps/files/data/documents";
  const auto st = stat_of(dir);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_uid, 1000u);
  EXPECT_EQ(st.st_gid, 1001u);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  // Made on the way: root-owned and closed.
  for (const auto& p : {root_path + "/apps", root_path + "/apps/files", root_path + "/apps/files/data"}) {
    const auto ist = stat_of(p);
    EXPECT_EQ(ist.st_uid, 0u) << p;
    EXPECT_EQ(ist.st_mode & 07777, 0700u) << p;
  }
  EXPECT_EQ(read_file(dir + "/.portalfs-version"), "1.2\n");
  const auto mst = stat_of(dir + "/.portalfs-version");
  EXPECT_EQ(mst.st_mode & 07777, 0444u);
}

TEST_F(ProvisionTest, IdempotentAndLeavesExistingAlone) {
  StorageRoot root(root_path);
  const auto components = data_dir_components("files", "data");
  ASSERT_TRUE(ensure_dir(root, components, data_leaf("1.0")).created);
  write_file(root_path + "/apps/files/data/keep.txt", "mine");

  LeafSpec other = data_leaf("2.0");
  other.owner = policy::Owner{5, 5};
  const Ensured again = ensure_dir(root, components, other);
  EXPECT_FALSE(again.created);
  ASSERT_TRUE(again.marker);
  EXPECT_EQ(*again.marker, "1.0");
  EXPECT_EQ(stat_of(root_path + "/apps/files/data").st_uid, 1000u);  // not re-chowned
  EXPECT_EQ(read_file(root_path + "/apps/files/data/.portalfs-version"), "1.0\n");
  EXPECT_EQ(read_file(root_path + "/apps/files/data/keep.txt"), "mine");

  other.chown_existing = true;
  ensure_dir(root, components, other);
  EXPECT_EQ(stat_of(root_path + "/apps/files/data").st_uid, 5u);
}

TEST_F(ProvisionTest, SymlinkAtAppsIsRefused) {
  fs::create_directory_symlink(outside, root_path + "/apps");
  expect_refused(data_dir_components("files", "data"));
}

TEST_F(ProvisionTest, SymlinkAtTheAppDirIsRefused) {
  fs::create_directories(root_path + "/apps");
  fs::create_directory_symlink(outside, root_path + "/apps/files");
  expect_refused(data_dir_components("files", "data"));
}

TEST_F(ProvisionTest, SymlinkAtANestedIntermediateIsRefused) {
  fs::create_directories(root_path + "/apps/files");
  fs::create_directory_symlink(outside, root_path + "/apps/files/data");
  expect_refused(data_dir_components("files", "data/documents"));
}

TEST_F(ProvisionTest, SymlinkAsTheLeafIsRefused) {
  fs::create_directories(root_path + "/apps/files");
  fs::create_directory_symlink(outside, root_path + "/apps/files/data");
  expect_refused(data_dir_components("files", "data"));
}

TEST_F(ProvisionTest, RelativeSymlinkWithDotDotIsRefused) {
  fs::create_directories(root_path + "/apps/files");
  fs::create_directory_symlink("../../../outside", root_path + "/apps/files/data");
  expect_refused(data_dir_components("files", "data/x"));
}

TEST_F(ProvisionTest, FileOnTheWayIsRefused) {
  fs::create_directories(root_path + "/apps");
  write_file(root_path + "/apps/files", "not a dir");
  StorageRoot root(root_path);
  EXPECT_THROW(ensure_dir(root, data_dir_components("files", "data"), data_leaf()), ProvisionError);
}

TEST_F(ProvisionTest, BadComponentsAreRefused) {
  StorageRoot root(root_path);
  for (const auto& name : {"..", "data/../..", ".", "a//b", ""}) {
    EXPECT_THROW(ensure_dir(root, data_dir_components("files", name), data_leaf()), ProvisionError) << name;
  }
  EXPECT_THROW(ensure_dir(root, {}, data_leaf()), ProvisionError);
  EXPECT_TRUE(is_empty_dir(outside));
}

TEST_F(ProvisionTest, TrashDeletesWithoutFollowingSymlinks) {
  write_file(outside + "/precious", "keep me");
  StorageRoot root(root_path);
  ensure_dir(root, data_dir_components("files", "data/deep"), data_leaf());
  write_file(root_path + "/apps/files/data/deep/f", "x");
  fs::create_directory_symlink(outside, root_path + "/apps/files/data/link_dir");
  fs::create_symlink(outside + "/precious", root_path + "/apps/files/data/link_file");
  EXPECT_TRUE(move_to_trash(root, app_dir_components("files")));
  EXPECT_FALSE(fs::exists(root_path + "/apps/files"));  // gone from its place at once
  EXPECT_TRUE(trash_pending(root));
  const TrashReport report = empty_trash(root);
  EXPECT_EQ(report.left, 0u) << report.problem;
  EXPECT_GE(report.deleted, 7u);  // files, dir, data, deep, two links, .portalfs-version
  EXPECT_FALSE(trash_pending(root));
  EXPECT_TRUE(is_empty_dir(root_path + "/trash"));
  EXPECT_EQ(read_file(outside + "/precious"), "keep me");
  EXPECT_FALSE(move_to_trash(root, app_dir_components("files")));
  EXPECT_FALSE(move_to_trash(root, app_dir_components("never")));
}

TEST_F(ProvisionTest, TrashThroughASymlinkedParentIsRefused) {
  fs::create_directories(outside + "/data");
  write_file(outside + "/data/precious", "keep me");
  fs::create_directories(root_path + "/apps");
  fs::create_directory_symlink(outside, root_path + "/apps/files");
  StorageRoot root(root_path);
  EXPECT_THROW(move_to_trash(root, data_dir_components("files", "data")), ProvisionError);
  EXPECT_EQ(read_file(outside + "/data/precious"), "keep me");
  // The symlink itself, as the thing to delete, is deleted as a link.
  EXPECT_TRUE(move_to_trash(root, app_dir_components("files")));
  EXPECT_EQ(empty_trash(root).left, 0u);
  EXPECT_FALSE(fs::exists(fs::symlink_status(root_path + "/apps/files")));
  EXPECT_EQ(read_file(outside + "/data/precious"), "keep me");
}

// Issue #18: a tree far deeper than any recursion could follow (the daemon crashed with a
// stack overflow at 19,800 levels), deleted with a few fds and in constant stack.
TEST_F(ProvisionTest, TrashDeletesATreeDeeperThanAStackAllows) {
  constexpr int kDepth = 25000;
  StorageRoot root(root_path);
  ensure_dir(root, data_dir_components("deep", "data"), data_leaf());
  {
    common::UniqueFd cur(::open((root_path + "/apps/deep/data").c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    for (int i = 0; i < kDepth; ++i) {
      ASSERT_EQ(::mkdirat(cur.get(), "d", 0755), 0) << i;
      if (i % 1000 == 0) {
        ASSERT_EQ(::close(::openat(cur.get(), "f", O_CREAT | O_WRONLY | O_CLOEXEC, 0644)), 0);
      }
      cur.reset(::openat(cur.get(), "d", O_PATH | O_DIRECTORY | O_CLOEXEC));
      ASSERT_TRUE(cur) << i;
    }
  }
  ASSERT_TRUE(move_to_trash(root, app_dir_components("deep")));
  int max_fd = -1;
  const TrashReport report = empty_trash(root, [&] {
    // The lowest free fd tells how many are open at most (nothing else opens fds here).
    const int probe = ::dup(0);
    max_fd = std::max(max_fd, probe);
    ::close(probe);
    return true;
  });
  EXPECT_EQ(report.left, 0u) << report.problem;
  EXPECT_EQ(report.deleted, static_cast<std::size_t>(kDepth + kDepth / 1000 + 3));  // + data, apps/deep, marker
  EXPECT_TRUE(is_empty_dir(root_path + "/trash"));
  EXPECT_LT(max_fd, 64);
}

TEST_F(ProvisionTest, TrashDeletesAWideTree) {
  StorageRoot root(root_path);
  ensure_dir(root, data_dir_components("wide", "data"), data_leaf());
  const std::string data = root_path + "/apps/wide/data";
  for (int i = 0; i < 2000; ++i) {
    fs::create_directories(data + "/d" + std::to_string(i) + "/sub");
    write_file(data + "/d" + std::to_string(i) + "/sub/f", "x");
    write_file(data + "/f" + std::to_string(i), "y");
  }
  ASSERT_TRUE(move_to_trash(root, app_dir_components("wide")));
  const TrashReport report = empty_trash(root);
  EXPECT_EQ(report.left, 0u) << report.problem;
  EXPECT_EQ(report.deleted, 2000u * 4 + 3);
  EXPECT_TRUE(is_empty_dir(root_path + "/trash"));
}

// What a kill -9 in the middle leaves is finished by the next call: the trash is its own list.
TEST_F(ProvisionTest, AnInterruptedEmptyingIsFinishedByTheNextOne) {
  StorageRoot root(root_path);
  ensure_dir(root, data_dir_components("big", "cache"), data_leaf());
  for (int i = 0; i < 300; ++i) fs::create_directories(root_path + "/apps/big/cache/" + std::to_string(i) + "/a/b");
  ASSERT_TRUE(move_to_trash(root, data_dir_components("big", "cache")));
  int calls = 0;
  const TrashReport first = empty_trash(root, [&] { return ++calls < 50; });
  EXPECT_GT(first.deleted, 0u);
  EXPECT_TRUE(trash_pending(root));
  const TrashReport second = empty_trash(root);
  EXPECT_EQ(second.left, 0u) << second.problem;
  EXPECT_FALSE(trash_pending(root));
  // A new directory of the same name starts empty.
  EXPECT_TRUE(ensure_dir(root, data_dir_components("big", "cache"), data_leaf()).created);
  EXPECT_EQ(std::distance(fs::directory_iterator(root_path + "/apps/big/cache"), fs::directory_iterator{}), 1);
}

TEST_F(ProvisionTest, AMountPointInTheTrashIsLeftAndNamed) {
  StorageRoot root(root_path);
  ensure_dir(root, data_dir_components("m", "data/mnt"), data_leaf());
  write_file(outside + "/precious", "keep me");
  ASSERT_EQ(::mount(outside.c_str(), (root_path + "/apps/m/data/mnt").c_str(), nullptr, MS_BIND, nullptr), 0);
  // The app's directory holding it moves (a rename of the mount point itself would not).
  ASSERT_TRUE(move_to_trash(root, app_dir_components("m")));
  const TrashReport report = empty_trash(root);
  EXPECT_GE(report.left, 1u);
  EXPECT_THAT(report.problem, HasSubstr("mnt"));
  EXPECT_EQ(read_file(outside + "/precious"), "keep me");
  // Once unmounted, the next call finishes.
  std::string mnt;
  for (const auto& e : fs::recursive_directory_iterator(root_path + "/trash")) {
    if (e.path().filename() == "mnt") mnt = e.path();
  }
  ASSERT_FALSE(mnt.empty());
  ASSERT_EQ(::umount2(mnt.c_str(), MNT_DETACH), 0);
  EXPECT_EQ(empty_trash(root).left, 0u);
  EXPECT_EQ(read_file(outside + "/precious"), "keep me");
}

// Issue #18: out of space while an upgrade adds a data dir left it made (root 0700, empty
// marker) but never chowned, and the next try trusted it. Now a directory appears at its name
// complete or not at all, and one without a complete marker is finished again.
TEST_F(ProvisionTest, ADirectoryAppearsCompleteOrNotAtAll) {
  // A full disk: a small tmpfs as the storage root, filled up.
  ASSERT_EQ(::mount("tmpfs", root_path.c_str(), "tmpfs", 0, "size=256k"), 0) << std::strerror(errno);
  struct Unmount {
    std::string path;
    ~Unmount() { ::umount2(path.c_str(), MNT_DETACH); }
  } unmount{root_path};
  StorageRoot root(root_path);
  ensure_dir(root, app_dir_components("files"), LeafSpec{});
  {
    common::UniqueFd fill(::open((root_path + "/fill").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
    const std::string block(4096, 'x');
    while (::write(fill.get(), block.data(), block.size()) > 0) {
    }
    ASSERT_EQ(errno, ENOSPC);
  }
  try {
    ensure_dir(root, data_dir_components("files", "cache"), data_leaf("2.0"));
    ADD_FAILURE() << "made a data dir on a full disk";
  } catch (const ProvisionError& e) {
    EXPECT_THAT(e.what(), HasSubstr("apps/files/cache"));
  }
  EXPECT_FALSE(fs::exists(root_path + "/apps/files/cache"));  // nothing half made at its name
  // Space comes back: the same call makes it whole, owned as asked.
  fs::remove(root_path + "/fill");
  const Ensured e = ensure_dir(root, data_dir_components("files", "cache"), data_leaf("2.0"));
  EXPECT_TRUE(e.created);
  EXPECT_EQ(stat_of(root_path + "/apps/files/cache").st_uid, 1000u);
  EXPECT_EQ(read_file(root_path + "/apps/files/cache/.portalfs-version"), "2.0\n");
  EXPECT_EQ(std::distance(fs::directory_iterator(root_path + "/apps/files"), fs::directory_iterator{}), 1);
}

TEST_F(ProvisionTest, AnUnfinishedDataDirIsFinishedNotTrusted) {
  StorageRoot root(root_path);
  // What an older portalfs left after ENOSPC: made, root 0700, marker empty.
  fs::create_directories(root_path + "/apps/files/cache");
  ::chmod((root_path + "/apps/files/cache").c_str(), 0700);
  write_file(root_path + "/apps/files/cache/.portalfs-version", "");
  const Ensured e = ensure_dir(root, data_dir_components("files", "cache"), data_leaf("2.0"));
  EXPECT_FALSE(e.created);
  ASSERT_TRUE(e.repair);
  EXPECT_THAT(*e.repair, HasSubstr("/apps/files/cache/.portalfs-version: incomplete"));
  const auto st = stat_of(root_path + "/apps/files/cache");
  EXPECT_EQ(st.st_uid, 1000u);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  EXPECT_EQ(read_file(root_path + "/apps/files/cache/.portalfs-version"), "2.0\n");
  // Now complete: trusted as it is.
  const Ensured again = ensure_dir(root, data_dir_components("files", "cache"), data_leaf("3.0"));
  EXPECT_FALSE(again.repair);
  ASSERT_TRUE(again.marker);
  EXPECT_EQ(*again.marker, "2.0");
}

TEST_F(ProvisionTest, AMarkerAnAppWroteIsValidatedNotPassedOn) {
  StorageRoot root(root_path);
  ASSERT_TRUE(ensure_dir(root, data_dir_components("files", "data"), data_leaf("1.0")).created);
  const std::string marker = root_path + "/apps/files/data/.portalfs-version";
  for (const std::string& bad : {std::string("\x1b[2J\x1b]0;owned\x07\n"), std::string("\xff\xfe\n"),
                                std::string("1.0\r\n"), std::string("\xc2\x9b" "31m\n")}) {
    fs::remove(marker);
    write_file(marker, bad);
    const Ensured e = ensure_dir(root, data_dir_components("files", "data"), data_leaf("2.0"));
    EXPECT_FALSE(e.marker) << bad;
    ASSERT_TRUE(e.repair) << bad;
    EXPECT_THAT(*e.repair, HasSubstr(marker + ": not a version"));
    EXPECT_EQ(read_file(marker), "2.0\n");
  }
}

TEST_F(ProvisionTest, ALeftoverTemporaryDirectoryIsNotReused) {
  StorageRoot root(root_path);
  fs::create_directories(root_path + "/apps/files");
  // Whatever sits under the temporary name (a crash's leftover, or a planted symlink) goes to
  // the trash; the new directory is made fresh.
  const std::string leftover = root_path + "/apps/files/.portalfs-new-" + std::to_string(std::hash<std::string>()("data"));
  fs::create_directory_symlink(outside, leftover);
  const Ensured e = ensure_dir(root, data_dir_components("files", "data"), data_leaf("1.0"));
  EXPECT_TRUE(e.created);
  EXPECT_FALSE(fs::exists(fs::symlink_status(leftover)));
  EXPECT_TRUE(is_empty_dir(outside));
  EXPECT_EQ(read_file(root_path + "/apps/files/data/.portalfs-version"), "1.0\n");
  EXPECT_EQ(empty_trash(root).left, 0u);
  EXPECT_TRUE(is_empty_dir(outside));
}

TEST_F(ProvisionTest, DirExists) {
  StorageRoot root(root_path);
  EXPECT_FALSE(dir_exists(root, share_dir_components("music")));
  ensure_dir(root, share_dir_components("music"), LeafSpec{});
  EXPECT_TRUE(dir_exists(root, share_dir_components("music")));
  fs::create_directory_symlink(outside, root_path + "/shared/link");
  EXPECT_FALSE(dir_exists(root, share_dir_components("link")));
}

}  // namespace
}  // namespace portalfs::mountmgr
