// SPDX-License-Identifier: MIT
// Set-id bits kept in a record (fuse/setid_bits.hpp), on a plain directory: what a view shows
// of a backing file, and what the disk holds after each change. Runs as root (trusted.*).
#include "fuse/setid_bits.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <string>

#include "common/unique_fd.hpp"
#include "tests/testutil/temp_dir.hpp"

namespace portalfs::fuse::setid_bits {
namespace {

struct stat disk_stat(mode_t mode) {
  struct stat st {};
  st.st_mode = S_IFREG | mode;
  return st;
}

TEST(SetIdBits, AViewShowsTheRecordsBitsNeverTheDisks) {
  EXPECT_EQ(shown(disk_stat(0755), std::nullopt), static_cast<mode_t>(S_IFREG | 0755));
  EXPECT_EQ(shown(disk_stat(06755), std::nullopt), static_cast<mode_t>(S_IFREG | 0755));
  EXPECT_EQ(shown(disk_stat(01755), std::nullopt), static_cast<mode_t>(S_IFREG | 01755));
  EXPECT_EQ(shown(disk_stat(01755), 04000), static_cast<mode_t>(S_IFREG | 04755));
  EXPECT_EQ(shown(disk_stat(03755), 07000), static_cast<mode_t>(S_IFREG | 07755));
}

TEST(SetIdBits, AKillTakesSetUidAndAGroupExecutablesSetGid) {
  EXPECT_EQ(after_kill(06000 | 0755) & 07000, 0u);
  EXPECT_EQ(after_kill(06000 | 0745) & 07000, static_cast<mode_t>(S_ISGID));
  EXPECT_EQ(after_kill(07000 | 0755) & 07000, static_cast<mode_t>(S_ISVTX));
  EXPECT_EQ(made_mode(04755), 0755u);
  EXPECT_EQ(made_mode(01755), 01755u);
}

class OnDisk : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.path() + "/f";
    fd_.reset(::open(path_.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644));
    ASSERT_TRUE(fd_);
  }
  struct stat now() const {
    struct stat st {};
    EXPECT_EQ(::fstat(fd_.get(), &st), 0);
    return st;
  }
  std::string record() const {
    char buf[16];
    const ssize_t n = ::getxattr(path_.c_str(), kXattr, buf, sizeof(buf));
    return n < 0 ? "" : std::string(buf, static_cast<size_t>(n));
  }
  testutil::TempDir dir_;
  std::string path_;
  common::UniqueFd fd_;
};

TEST_F(OnDisk, ApplyWritesTheRecordBeforeTheMarkerAndRemovesItAfter) {
  ASSERT_EQ(apply(fd_.get(), 06750, 0, false), 0);
  EXPECT_EQ(now().st_mode & 07777, static_cast<mode_t>(S_ISVTX | 0750));
  EXPECT_EQ(record(), "6000");
  EXPECT_EQ(read(fd_.get(), now()), std::optional<mode_t>(06000));
  EXPECT_EQ(shown(now(), read(fd_.get(), now())) & 07777, 06750u);
  ASSERT_EQ(apply(fd_.get(), 0640, S_ISGID, true), 0);  // `extra`: a device's marker
  EXPECT_EQ(now().st_mode & 07777, static_cast<mode_t>(S_ISGID | 0640));
  EXPECT_EQ(record(), "");
  EXPECT_EQ(read(fd_.get(), now()), std::nullopt);
}

TEST_F(OnDisk, SettleKillsOnlyWhenAskedAndPutsTheExtraBitBack) {
  ASSERT_EQ(apply(fd_.get(), 06755, 0, false), 0);
  ASSERT_EQ(settle(fd_.get(), 0, false), 0);
  EXPECT_EQ(record(), "6000");
  ASSERT_EQ(settle(fd_.get(), 0, true), 0);
  EXPECT_EQ(record(), "");
  EXPECT_EQ(now().st_mode & 07777, 0755u);
  ASSERT_EQ(::fchmod(fd_.get(), 0755), 0);  // a chown took a device's marker
  ASSERT_EQ(settle(fd_.get(), S_ISGID, false), 0);
  EXPECT_EQ(now().st_mode & 07777, static_cast<mode_t>(S_ISGID | 0755));
}

TEST_F(OnDisk, MakeGivesTheNameOnlyToAFileWithItsRecord) {
  common::UniqueFd dir(::open(dir_.path().c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  ASSERT_EQ(make(dir.get(), "m", 04755), 0);
  struct stat st {};
  ASSERT_EQ(::stat((dir_.path() + "/m").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, static_cast<mode_t>(S_ISVTX | 0755));
  char buf[16];
  const ssize_t n = ::getxattr((dir_.path() + "/m").c_str(), kXattr, buf, sizeof(buf));
  EXPECT_EQ(std::string(buf, static_cast<size_t>(std::max<ssize_t>(n, 0))), "4000");
  EXPECT_EQ(make(dir.get(), "m", 04755), EEXIST);
  ASSERT_EQ(make(dir.get(), "plain", 0640), 0);
  ASSERT_EQ(::stat((dir_.path() + "/plain").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
}

}  // namespace
}  // namespace portalfs::fuse::setid_bits
