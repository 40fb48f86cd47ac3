// SPDX-License-Identifier: MIT
// Provisioning never creates or deletes anything outside the storage root: a symlink planted
// anywhere on the way is refused, never followed.

#include "mountmgr/provision.hpp"

#include <sys/stat.h>

#include <filesystem>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

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

TEST_F(ProvisionTest, RemoveTreeDeletesWithoutFollowingSymlinks) {
  write_file(outside + "/precious", "keep me");
  StorageRoot root(root_path);
  ensure_dir(root, data_dir_components("files", "data/deep"), data_leaf());
  write_file(root_path + "/apps/files/data/deep/f", "x");
  fs::create_directory_symlink(outside, root_path + "/apps/files/data/link_dir");
  fs::create_symlink(outside + "/precious", root_path + "/apps/files/data/link_file");
  EXPECT_TRUE(remove_tree(root, app_dir_components("files")));
  EXPECT_FALSE(fs::exists(root_path + "/apps/files"));
  EXPECT_EQ(read_file(outside + "/precious"), "keep me");
  EXPECT_FALSE(remove_tree(root, app_dir_components("files")));
  EXPECT_FALSE(remove_tree(root, app_dir_components("never")));
}

TEST_F(ProvisionTest, RemoveTreeThroughASymlinkedParentIsRefused) {
  fs::create_directories(outside + "/data");
  write_file(outside + "/data/precious", "keep me");
  fs::create_directories(root_path + "/apps");
  fs::create_directory_symlink(outside, root_path + "/apps/files");
  StorageRoot root(root_path);
  EXPECT_THROW(remove_tree(root, data_dir_components("files", "data")), ProvisionError);
  EXPECT_EQ(read_file(outside + "/data/precious"), "keep me");
  // The symlink itself, as the thing to delete, is deleted as a link.
  EXPECT_TRUE(remove_tree(root, app_dir_components("files")));
  EXPECT_FALSE(fs::exists(fs::symlink_status(root_path + "/apps/files")));
  EXPECT_EQ(read_file(outside + "/data/precious"), "keep me");
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
