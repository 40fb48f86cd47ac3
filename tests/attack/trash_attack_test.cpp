// SPDX-License-Identifier: MIT
// A share's trash (policy/trash.hpp) seen from inside the app's container: A's read-write
// share S1 gets a trash at <storage>/share-trash/s1, beside S1's backing directory. Whatever
// A does from its jail, it can't name the trash, open what is in it, or move anything into or
// out of it; a directory it removed (and still holds open) takes no new entries.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "tests/attack/attack_fixture.hpp"

namespace portalfs::testutil {
namespace {

class TrashAttack : public Attack {
 protected:
  void SetUp() override {
    Attack::SetUp();
    if (HasFatalFailure() || IsSkipped()) return;
    trash_ = m_.storage() + "/share-trash/s1";
    ASSERT_EQ(::mkdir((m_.storage() + "/share-trash").c_str(), 0700), 0);
    ASSERT_EQ(::mkdir(trash_.c_str(), 0700), 0);
    policy::ViewSpecs specs = m_.views();
    for (auto& v : specs) {
      if (v.backing == s1_backing_) v.trash = trash_;
    }
    m_.set_views(specs);
  }

  /// The trash's slots (ids).
  [[nodiscard]] std::vector<std::string> slots() const {
    std::vector<std::string> out;
    for (const auto& name : list_dir(trash_)) {
      if (name != "." && name != "..") out.push_back(name);
    }
    return out;
  }

  std::string trash_;
};

TEST_F(TrashAttack, ADeleteFromTheJailLandsInTheTrashWhichTheJailCannotReach) {
  write_file(s1_backing_ + "/doc", "bytes");
  ASSERT_EQ(::chown((s1_backing_ + "/doc").c_str(), 2000, 2000), 0);
  ASSERT_EQ(::symlink("../share-trash/s1", (s1_backing_ + "/to-trash").c_str()), 0);  // the backing side's way
  EXPECT_EQ(in_jail(kAppUid, kAppGid, [] { return rc_errno(::unlink("/s1/doc")); }), 0);
  ASSERT_EQ(slots().size(), 1u);
  const std::string slot = slots()[0];
  EXPECT_EQ(read_file(trash_ + "/" + slot + "/entry"), "bytes");

  for (uid_t uid : {uid_t{0}, kAppUid}) {
    const std::string in_slot = "/s1/../share-trash/s1/" + slot + "/entry";
    EXPECT_EQ(in_jail(uid, uid, [] { return open_errno("/s1/to-trash", O_RDONLY | O_DIRECTORY); }), ENOENT);
    EXPECT_EQ(in_jail(uid, uid, [&] { return open_errno(in_slot.c_str(), O_RDONLY); }), ENOENT);
    EXPECT_EQ(in_jail(uid, uid, [] { return open_errno("/s1/../../share-trash/s1", O_RDONLY | O_DIRECTORY); }), ENOENT);
    // Into it, or out of it, by rename or link: nothing to name.
    write_file(s1_backing_ + "/mine", "m");
    EXPECT_NE(in_jail(uid, uid, [&] { return rc_errno(::rename("/s1/mine", ("/s1/to-trash/" + slot + "/x").c_str())); }), 0);
    EXPECT_NE(in_jail(uid, uid, [&] { return rc_errno(::rename(in_slot.c_str(), "/s1/back")); }), 0);
    EXPECT_NE(in_jail(uid, uid, [&] { return rc_errno(::link(in_slot.c_str(), "/s1/back")); }), 0);
    EXPECT_EQ(read_file(s1_backing_ + "/mine"), "m");
  }
  EXPECT_EQ(read_file(trash_ + "/" + slot + "/entry"), "bytes");
  EXPECT_EQ(slots(), std::vector<std::string>{slot});
  EXPECT_FALSE(exists(s1_backing_ + "/back"));
}

TEST_F(TrashAttack, ARemovedDirectoryHeldOpenTakesNoNewEntries) {
  ASSERT_EQ(::mkdir((s1_backing_ + "/d").c_str(), 0777), 0);
  // Holds d open, removes it (into the trash), then tries to put a file and a directory in it.
  const int rc = in_jail(kAppUid, kAppGid, [] {
    const int dir = ::open("/s1/d", O_RDONLY | O_DIRECTORY);
    if (dir < 0) return 250;
    if (::rmdir("/s1/d") != 0) return 251;
    const int made = ::openat(dir, "planted", O_WRONLY | O_CREAT | O_EXCL, 0644);
    const int err = made < 0 ? errno : 0;
    const int mkdir_err = ::mkdirat(dir, "sub", 0755) == 0 ? 0 : errno;
    return err == ENOENT && mkdir_err == ENOENT ? ENOENT : 252;
  });
  EXPECT_EQ(rc, ENOENT);
  ASSERT_EQ(slots().size(), 1u);
  EXPECT_EQ(list_dir(trash_ + "/" + slots()[0] + "/entry").size(), 2u);  // "." and "..": empty
  EXPECT_FALSE(exists(s1_backing_ + "/d"));
}

}  // namespace
}  // namespace portalfs::testutil
