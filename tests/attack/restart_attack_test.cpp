// SPDX-License-Identifier: MIT
// Attacks that only a restart makes possible (issue #18), from inside app A's views
// (attack_fixture.hpp has the set-up). A running daemon holds each view root by fd, so what
// an app does to the path of a backing directory changes nothing while it runs; it matters
// when the daemon reaches the directory again, at its next start. There the path is walked
// from the storage root one component at a time (common/beneath.hpp), and a symlink on the
// way gets the view refused (EIO), never followed. (path_attack_test.cpp runs its symlink
// attacks across a restart too.)
//
// Not attacked here: a symlink put at a view root's own backing path (<storage>/a-v replaced
// by a link to b-v while the daemon is stopped). The storage root and its entries are root's
// and out of every app's reach: the ".." of a view root is the synthetic directory above it
// (read-only; DotDotAtTheViewRoot... checks it), and no view's backing holds the storage root.
// Only a host-side actor with write access to the storage root could plant it, and that actor
// reads b-v directly: there is no app-made attack to check.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <ostream>
#include <string>
#include <vector>

#include "tests/attack/attack_fixture.hpp"

namespace portalfs::testutil {
namespace {

// A's second data view, as the mount manager names a data dir "/v/x/etc" nested in "/v".
constexpr const char kNestedName[] = "v%2Fx%2Fetc";
// What a write through the nested view tries to create (unique enough for the host's /etc).
constexpr const char kPlanted[] = "portalfs-attack-planted";

/// Where the app points "x", so that the nested view's "x/etc" lands on that target's "etc".
enum class Target {
  b_data,           // "../b-v": B's data (relative, resolved next to A's backing)
  read_only_share,  // <storage>/a-s2: the share A may only read, served read-write
  host_root,        // "/": the host's /etc
};

struct Case {
  Target target;
  uid_t planter;  // who swaps "x" in A's container: root, or the app's unprivileged user
};

std::string name_of(const Case& c) {
  const std::string target = c.target == Target::b_data            ? "ToBsData"
                             : c.target == Target::read_only_share ? "ToTheReadOnlyShare"
                                                                   : "ToTheHostRoot";
  return target + (c.planter == 0 ? "_PlantedByRoot" : "_PlantedByTheAppsUser");
}
void PrintTo(const Case& c, std::ostream* os) { *os << name_of(c); }

class NestedViewAttack : public Attack, public ::testing::WithParamInterface<Case> {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(Attack::SetUp());
    if (IsSkipped()) return;
    // Each target has an "etc" with a file in it: B's secret, and a file of the read-only
    // share that its mode lets anyone write (as its ro_file), so a refusal is the daemon's.
    ASSERT_EQ(sys(::mkdir((b_backing_ + "/etc").c_str(), 0755)), kOk);
    write_file(b_backing_ + "/etc/secret", kBSecret);
    ASSERT_EQ(sys(::mkdir((s2_backing_ + "/etc").c_str(), 0777)), kOk);
    ASSERT_EQ(sys(::chmod((s2_backing_ + "/etc").c_str(), 0777)), kOk);
    write_file(s2_backing_ + "/etc/ro_file", kReadOnlyBytes);
    ASSERT_EQ(sys(::chown((s2_backing_ + "/etc/ro_file").c_str(), kAppUid, kAppGid)), kOk);
    ASSERT_EQ(sys(::chmod((s2_backing_ + "/etc/ro_file").c_str(), 0666)), kOk);
    take_snapshots();

    // Nested in the first view's backing; both directories on the way are the app's, as the
    // mount manager provisions them.
    nested_ = m_.add_view("a", ViewKind::data, kNestedName, a_backing_ + "/x/etc");
    ASSERT_EQ(sys(::chown((a_backing_ + "/x").c_str(), kAppUid, kAppGid)), kOk);
    ASSERT_EQ(sys(::chown((a_backing_ + "/x/etc").c_str(), kAppUid, kAppGid)), kOk);
    write_file(nested_ + "/mine", "A's nested file\n");
    ASSERT_EQ(read_file(a_backing_ + "/x/etc/mine"), "A's nested file\n");
  }

  void TearDown() override {
    // "x" may point at "/": remove the link itself rather than leave it to the temporary
    // directory's recursive removal (which does not follow links, but need not be trusted to).
    struct stat st {};
    if (!a_backing_.empty() && ::lstat((a_backing_ + "/x").c_str(), &st) == 0 && S_ISLNK(st.st_mode)) {
      EXPECT_EQ(sys(::unlink((a_backing_ + "/x").c_str())), kOk);
    }
    Attack::TearDown();
  }

  [[nodiscard]] std::string link_target() const {
    switch (GetParam().target) {
      case Target::b_data: return "../b-v";
      case Target::read_only_share: return s2_backing_;
      case Target::host_root: return "/";
    }
    return "";
  }
  /// The directory "x/etc" names once "x" is the link, and a file in it.
  [[nodiscard]] std::string victim_dir() const {
    switch (GetParam().target) {
      case Target::b_data: return b_backing_ + "/etc";
      case Target::read_only_share: return s2_backing_ + "/etc";
      case Target::host_root: return "/etc";
    }
    return "";
  }
  [[nodiscard]] std::string victim_file() const {
    switch (GetParam().target) {
      case Target::b_data: return "secret";
      case Target::read_only_share: return "ro_file";
      case Target::host_root: return "passwd";
    }
    return "";
  }

  std::string nested_;  // A's nested view through the mount
};

INSTANTIATE_TEST_SUITE_P(
    , NestedViewAttack,
    ::testing::Values(Case{Target::b_data, 0}, Case{Target::b_data, kAppUid},
                      Case{Target::read_only_share, 0}, Case{Target::read_only_share, kAppUid},
                      Case{Target::host_root, 0}, Case{Target::host_root, kAppUid}),
    [](const ::testing::TestParamInfo<Case>& p) { return name_of(p.param); });

TEST_P(NestedViewAttack, AMiddleComponentSwappedForASymlinkGetsTheNestedViewRefusedAfterARestart) {
  const uid_t uid = GetParam().planter;
  const std::string link = link_target();
  ASSERT_TRUE(exists(victim_dir() + "/" + victim_file())) << victim_dir();
  ASSERT_FALSE(exists(victim_dir() + "/" + kPlanted)) << "left over from an earlier run";
  // The app, through its first view in its container: mv x x.old; ln -s <target> x.
  // Renaming inside a directory one owns needs no other right: its user is enough.
  ASSERT_EQ(Err{in_jail(uid, uid, [&link] {
              if (::rename("/data/x", "/data/x.old") != 0) return errno;
              return rc_errno(::symlink(link.c_str(), "/data/x"));
            })},
            kOk);
  ASSERT_EQ(readlink_str(a_backing_ + "/x"), link);
  // The running daemon holds the nested view's root by fd: it serves the directory the app
  // made, now at x.old/etc, and nothing of the target.
  EXPECT_EQ(list_dir(nested_), (std::vector<std::string>{".", "..", "mine"}));
  EXPECT_EQ(read_file(nested_ + "/mine"), "A's nested file\n");

  // The daemon says which view it does not serve and why (going on when it serves it after
  // all, to show what that gives the app).
  const auto errors = restart();
  const std::string error = errors.size() == 1 ? errors[0] : "";
  EXPECT_EQ(errors.size(), 1u) << ::testing::PrintToString(errors);
  EXPECT_NE(error.find(std::string("view ") + kNestedName + " not served (EIO)"), std::string::npos) << error;
  EXPECT_NE(error.find(a_backing_ + "/x: is a symbolic link; refusing to follow it"), std::string::npos)
      << error;

  // The nested view answers EIO, to root and to the app's user, for reading and for writing...
  struct stat st {};
  EXPECT_EQ(sys(::stat(nested_.c_str(), &st)), Err{EIO});
  EXPECT_EQ(open_err(nested_ + "/" + victim_file(), O_RDONLY), Err{EIO});
  EXPECT_EQ(open_err(nested_ + "/" + kPlanted, O_WRONLY | O_CREAT, 0644), Err{EIO});
  EXPECT_EQ(open_err(nested_ + "/mine", O_RDONLY), Err{EIO});
  const std::string read_path = nested_ + "/" + victim_file();
  const std::string create_path = nested_ + "/" + kPlanted;
  EXPECT_EQ(Err{run_as(kAppUid, kAppGid, [&] { return open_errno(read_path.c_str(), O_RDONLY); })},
            Err{EIO});
  EXPECT_EQ(Err{run_as(kAppUid, kAppGid,
                       [&] { return open_errno(create_path.c_str(), O_WRONLY | O_CREAT); })},
            Err{EIO});
  // ...and is still listed, so the app sees an error rather than an absence.
  EXPECT_EQ(list_dir(m_.mountpoint() + "/apps/a/data"),
            (std::vector<std::string>{".", "..", "v", kNestedName}));

  // Nothing appeared in the target (TearDown also compares B's data and the share in full).
  if (exists(victim_dir() + "/" + kPlanted)) {
    ADD_FAILURE() << "written through the nested view: " << victim_dir() << "/" << kPlanted;
    ::unlink((victim_dir() + "/" + kPlanted).c_str());
  }
  // A's first view still serves, with the link and the moved directory as the app left them.
  write_file(a_ + "/still", "still serving\n");
  EXPECT_EQ(read_file(a_backing_ + "/still"), "still serving\n");
  EXPECT_EQ(readlink_str(a_ + "/x"), link);
  EXPECT_EQ(read_file(a_ + "/x.old/etc/mine"), "A's nested file\n");
}

}  // namespace
}  // namespace portalfs::testutil
