// SPDX-License-Identifier: MIT
#include "policy/access.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>
#include <cerrno>
#include <set>
#include <tuple>

namespace portalfs::policy {
namespace {

// Written out here rather than taken from is_mutation(), so the test checks the table.
struct OpRow {
  Op op;
  const char* name;
  bool mutation;
};

constexpr OpRow kOps[] = {
    {Op::lookup, "lookup", false},         {Op::getattr, "getattr", false},
    {Op::readlink, "readlink", false},     {Op::readdir, "readdir", false},
    {Op::statfs, "statfs", false},         {Op::open_read, "open_read", false},
    {Op::read, "read", false},             {Op::getxattr, "getxattr", false},
    {Op::listxattr, "listxattr", false},   {Op::flush, "flush", false},
    {Op::fsync, "fsync", false},           {Op::open_write, "open_write", true},
    {Op::write, "write", true},            {Op::create, "create", true},
    {Op::mknod, "mknod", true},            {Op::mkdir, "mkdir", true},
    {Op::symlink, "symlink", true},        {Op::link, "link", true},
    {Op::unlink, "unlink", true},          {Op::rmdir, "rmdir", true},
    {Op::rename, "rename", true},          {Op::setattr, "setattr", true},
    {Op::setxattr, "setxattr", true},      {Op::removexattr, "removexattr", true},
    {Op::fallocate, "fallocate", true},    {Op::copy_into, "copy_into", true},
    {Op::truncate, "truncate", true},
};

TEST(Access, OpTableListsEveryOp) {
  // truncate is the last enumerator: every value from 0 to it must be in kOps exactly once.
  std::set<int> seen;
  for (const OpRow& row : kOps) seen.insert(static_cast<int>(row.op));
  EXPECT_EQ(seen.size(), std::size(kOps));
  EXPECT_EQ(*seen.begin(), 0);
  EXPECT_EQ(*seen.rbegin(), static_cast<int>(Op::truncate));
  EXPECT_EQ(static_cast<int>(std::size(kOps)), static_cast<int>(Op::truncate) + 1);
}

TEST(Access, IsMutation) {
  for (const OpRow& row : kOps) EXPECT_EQ(is_mutation(row.op), row.mutation) << row.name;
}

constexpr Target kNone{};
constexpr Target kRead{true, Access::read};
constexpr Target kReadWrite{true, Access::read_write};
constexpr Target kCreateOnly{true, Access::create_only};
constexpr Target kNoDelete{true, Access::no_delete};
constexpr Target kOwnFiles{true, Access::own_files};

std::string target_name(Target t) {
  if (!t.granted) return "not_granted";
  std::string name = to_string(t.access);
  std::replace(name.begin(), name.end(), '-', '_');
  return name;
}

std::string errno_name(int err) {
  switch (err) {
    case 0: return "allowed";
    case ENOENT: return "ENOENT";
    case EXDEV: return "EXDEV";
    case EROFS: return "EROFS";
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case ENODATA: return "ENODATA";
    default: return std::to_string(err);
  }
}

}  // namespace

// Failure messages show a Decision as its errno's name.
void PrintTo(const Decision& d, std::ostream* os) { *os << errno_name(d.err); }

namespace {

// The whole matrix Op x {not granted, read, read-write}.
class DecideMatrix : public ::testing::TestWithParam<std::tuple<OpRow, Target>> {};

TEST_P(DecideMatrix, HidesThenRefusesMutationsOnReadOnly) {
  const auto& [row, target] = GetParam();
  int expected = 0;
  if (!target.granted) {
    expected = ENOENT;
  } else if (row.mutation && target.access == Access::read) {
    expected = EROFS;
  }
  EXPECT_EQ(decide(row.op, target), Decision{expected});
  EXPECT_EQ(decide(row.op, target).allowed(), expected == 0);
}

INSTANTIATE_TEST_SUITE_P(AllOps, DecideMatrix,
                         ::testing::Combine(::testing::ValuesIn(kOps),
                                            ::testing::Values(kNone, kRead, kReadWrite, kCreateOnly,
                                                              kNoDelete, kOwnFiles)),
                         [](const auto& test_info) {
                           return std::string(std::get<0>(test_info.param).name) + "_" +
                                  target_name(std::get<1>(test_info.param));
                         });

TEST(Access, DecisionDefaultsToAllowed) {
  EXPECT_TRUE(Decision{}.allowed());
  EXPECT_FALSE(Decision{EROFS}.allowed());
}

struct TwoPlaceCase {
  const char* test_name;
  Op op;
  Target from;
  Target to;
  bool same_view;
  int expected;
};

class DecideTwoPlaces : public ::testing::TestWithParam<TwoPlaceCase> {};

TEST_P(DecideTwoPlaces, RanksEnoentExdevErofs) {
  const TwoPlaceCase& c = GetParam();
  EXPECT_EQ(decide(c.op, c.from, c.to, c.same_view), Decision{c.expected});
}

INSTANTIATE_TEST_SUITE_P(
    Cases, DecideTwoPlaces,
    ::testing::Values(
        // rename: same view only, both sides writable.
        TwoPlaceCase{"rename_same_rw", Op::rename, kReadWrite, kReadWrite, true, 0},
        TwoPlaceCase{"rename_same_ro", Op::rename, kRead, kRead, true, EROFS},
        TwoPlaceCase{"rename_from_ro", Op::rename, kRead, kReadWrite, true, EROFS},
        TwoPlaceCase{"rename_to_ro", Op::rename, kReadWrite, kRead, true, EROFS},
        TwoPlaceCase{"rename_across_rw", Op::rename, kReadWrite, kReadWrite, false, EXDEV},
        TwoPlaceCase{"rename_across_ro_is_exdev", Op::rename, kRead, kRead, false, EXDEV},
        TwoPlaceCase{"rename_from_hidden", Op::rename, kNone, kReadWrite, true, ENOENT},
        TwoPlaceCase{"rename_to_hidden", Op::rename, kReadWrite, kNone, true, ENOENT},
        TwoPlaceCase{"rename_hidden_across_is_enoent", Op::rename, kNone, kReadWrite, false, ENOENT},
        TwoPlaceCase{"rename_both_hidden", Op::rename, kNone, kNone, false, ENOENT},
        // link: same view only, only the destination writable.
        TwoPlaceCase{"link_same_rw", Op::link, kReadWrite, kReadWrite, true, 0},
        TwoPlaceCase{"link_from_ro", Op::link, kRead, kReadWrite, true, 0},
        TwoPlaceCase{"link_to_ro", Op::link, kReadWrite, kRead, true, EROFS},
        TwoPlaceCase{"link_same_ro", Op::link, kRead, kRead, true, EROFS},
        TwoPlaceCase{"link_across_rw", Op::link, kReadWrite, kReadWrite, false, EXDEV},
        TwoPlaceCase{"link_across_to_ro_is_exdev", Op::link, kReadWrite, kRead, false, EXDEV},
        TwoPlaceCase{"link_from_hidden", Op::link, kNone, kReadWrite, false, ENOENT},
        TwoPlaceCase{"link_to_hidden", Op::link, kReadWrite, kNone, true, ENOENT},
        // copy_into: any two views, only the destination writable.
        TwoPlaceCase{"copy_same_rw", Op::copy_into, kReadWrite, kReadWrite, true, 0},
        TwoPlaceCase{"copy_across_rw", Op::copy_into, kReadWrite, kReadWrite, false, 0},
        TwoPlaceCase{"copy_across_from_ro", Op::copy_into, kRead, kReadWrite, false, 0},
        TwoPlaceCase{"copy_across_to_ro", Op::copy_into, kReadWrite, kRead, false, EROFS},
        TwoPlaceCase{"copy_same_ro", Op::copy_into, kRead, kRead, true, EROFS},
        TwoPlaceCase{"copy_from_hidden", Op::copy_into, kNone, kReadWrite, false, ENOENT},
        TwoPlaceCase{"copy_to_hidden", Op::copy_into, kReadWrite, kNone, false, ENOENT},
        // Any other op: each place by the one-place rule, views may differ.
        TwoPlaceCase{"read_across", Op::read, kRead, kRead, false, 0},
        TwoPlaceCase{"read_hidden", Op::read, kRead, kNone, false, ENOENT},
        TwoPlaceCase{"write_from_ro", Op::write, kRead, kReadWrite, false, EROFS},
        TwoPlaceCase{"write_to_ro", Op::write, kReadWrite, kRead, true, EROFS},
        TwoPlaceCase{"write_across_rw", Op::write, kReadWrite, kReadWrite, false, 0}),
    [](const auto& test_info) { return std::string(test_info.param.test_name); });

struct XattrCase {
  const char* test_name;
  Op op;
  Target target;
  const char* name;
  int expected;
};

class DecideXattr : public ::testing::TestWithParam<XattrCase> {};

TEST_P(DecideXattr, OnlyUserNamespace) {
  const XattrCase& c = GetParam();
  EXPECT_EQ(decide_xattr(c.op, c.target, c.name), Decision{c.expected});
}

INSTANTIATE_TEST_SUITE_P(
    Cases, DecideXattr,
    ::testing::Values(
        XattrCase{"get_user_rw", Op::getxattr, kReadWrite, "user.comment", 0},
        XattrCase{"get_user_ro", Op::getxattr, kRead, "user.comment", 0},
        XattrCase{"get_security", Op::getxattr, kReadWrite, "security.selinux", ENODATA},
        XattrCase{"get_trusted_ro", Op::getxattr, kRead, "trusted.overlay.opaque", ENODATA},
        XattrCase{"get_system_acl", Op::getxattr, kReadWrite, "system.posix_acl_access", ENODATA},
        XattrCase{"get_prefix_without_dot", Op::getxattr, kReadWrite, "userx", ENODATA},
        XattrCase{"get_upper_case", Op::getxattr, kReadWrite, "USER.x", ENODATA},
        XattrCase{"get_empty", Op::getxattr, kReadWrite, "", ENODATA},
        XattrCase{"get_hidden", Op::getxattr, kNone, "user.comment", ENOENT},
        XattrCase{"get_hidden_security", Op::getxattr, kNone, "security.x", ENOENT},
        XattrCase{"set_user_rw", Op::setxattr, kReadWrite, "user.comment", 0},
        XattrCase{"set_user_ro", Op::setxattr, kRead, "user.comment", EROFS},
        XattrCase{"set_security_rw", Op::setxattr, kReadWrite, "security.capability", EPERM},
        XattrCase{"set_trusted_rw", Op::setxattr, kReadWrite, "trusted.x", EPERM},
        XattrCase{"set_system_rw", Op::setxattr, kReadWrite, "system.posix_acl_default", EPERM},
        XattrCase{"set_security_ro_is_erofs", Op::setxattr, kRead, "security.capability", EROFS},
        XattrCase{"set_hidden", Op::setxattr, kNone, "user.comment", ENOENT},
        XattrCase{"remove_user_rw", Op::removexattr, kReadWrite, "user.comment", 0},
        XattrCase{"remove_user_ro", Op::removexattr, kRead, "user.comment", EROFS},
        XattrCase{"remove_trusted_rw", Op::removexattr, kReadWrite, "trusted.x", EPERM},
        XattrCase{"remove_hidden", Op::removexattr, kNone, "trusted.x", ENOENT},
        XattrCase{"list_rw", Op::listxattr, kReadWrite, "", 0},
        XattrCase{"list_ro_any_name", Op::listxattr, kRead, "security.selinux", 0},
        XattrCase{"list_hidden", Op::listxattr, kNone, "", ENOENT}),
    [](const auto& test_info) { return std::string(test_info.param.test_name); });

// The directories above the views (/, apps/<app>/<kind>/) can be read and never changed, and
// a link or rename into or out of them is EROFS before any EXDEV between views.
TEST(Access, AboveTheViewsIsReadOnly) {
  for (const OpRow& row : kOps) {
    EXPECT_EQ(decide(row.op, Target::above()), Decision{row.mutation ? EROFS : 0}) << row.name;
  }
  for (Op op : {Op::link, Op::rename, Op::copy_into}) {
    EXPECT_EQ(decide(op, Target::above(), kReadWrite, false), Decision{EROFS});
    EXPECT_EQ(decide(op, kReadWrite, Target::above(), false), Decision{EROFS});
    EXPECT_EQ(decide(op, Target::above(), Target::above(), true), Decision{EROFS});
    EXPECT_EQ(decide(op, kNone, Target::above(), false), Decision{ENOENT});
  }
  EXPECT_EQ(Target::hidden(), kNone);
  EXPECT_EQ(Target::view(Access::read), kRead);
}

TEST(Access, IsUserXattr) {
  EXPECT_TRUE(is_user_xattr("user.comment"));
  EXPECT_TRUE(is_user_xattr("user.mime_type"));
  for (const char* name : {"", "user", "userx.a", "User.a", "security.selinux", "trusted.a",
                           "system.posix_acl_access", " user.a"}) {
    EXPECT_FALSE(is_user_xattr(name)) << name;
  }
}

struct MknodCase {
  const char* test_name;
  Target target;
  GrantKind kind;
  uint32_t mode;
  int expected;
};

class DecideMknod : public ::testing::TestWithParam<MknodCase> {};

TEST_P(DecideMknod, SpecialFilesOnlyInData) {
  const MknodCase& c = GetParam();
  EXPECT_EQ(decide_mknod(c.target, c.kind, c.mode), Decision{c.expected});
}

INSTANTIATE_TEST_SUITE_P(
    Cases, DecideMknod,
    ::testing::Values(
        MknodCase{"regular_data", kReadWrite, GrantKind::data, S_IFREG | 0644, 0},
        MknodCase{"no_type_data", kReadWrite, GrantKind::data, 0644, 0},
        MknodCase{"regular_shared", kReadWrite, GrantKind::shared, S_IFREG | 0644, 0},
        MknodCase{"regular_host", kReadWrite, GrantKind::host, S_IFREG | 0600, 0},
        MknodCase{"fifo_data", kReadWrite, GrantKind::data, S_IFIFO | 0600, 0},
        MknodCase{"socket_data", kReadWrite, GrantKind::data, S_IFSOCK | 0600, 0},
        MknodCase{"fifo_shared", kReadWrite, GrantKind::shared, S_IFIFO | 0600, EPERM},
        MknodCase{"socket_shared", kReadWrite, GrantKind::shared, S_IFSOCK | 0600, EPERM},
        MknodCase{"fifo_host", kReadWrite, GrantKind::host, S_IFIFO | 0600, EPERM},
        MknodCase{"char_data", kReadWrite, GrantKind::data, S_IFCHR | 0600, 0},
        MknodCase{"block_data", kReadWrite, GrantKind::data, S_IFBLK | 0600, 0},
        MknodCase{"char_shared", kReadWrite, GrantKind::shared, S_IFCHR | 0600, EPERM},
        MknodCase{"block_shared", kReadWrite, GrantKind::shared, S_IFBLK | 0600, EPERM},
        MknodCase{"char_host", kReadWrite, GrantKind::host, S_IFCHR | 0600, EPERM},
        MknodCase{"dir_type", kReadWrite, GrantKind::data, S_IFDIR | 0755, EPERM},
        MknodCase{"regular_ro", kRead, GrantKind::data, S_IFREG | 0644, EROFS},
        MknodCase{"char_ro_is_erofs", kRead, GrantKind::data, S_IFCHR | 0600, EROFS},
        MknodCase{"fifo_shared_ro_is_erofs", kRead, GrantKind::shared, S_IFIFO | 0600, EROFS},
        MknodCase{"char_hidden", kNone, GrantKind::data, S_IFCHR | 0600, ENOENT},
        MknodCase{"regular_hidden", kNone, GrantKind::shared, S_IFREG | 0644, ENOENT},
        MknodCase{"fifo_above_views", Target::above(), GrantKind::data, S_IFIFO | 0600, EROFS}),
    [](const auto& test_info) { return std::string(test_info.param.test_name); });

}  // namespace
}  // namespace portalfs::policy

namespace portalfs::policy {
namespace {

// decide_made(): every op x every mode that protects x who made the target, written out.
// Columns: create-only (own, other's), no-delete (own, other's), own-files (own, other's).
struct MadeRow {
  Op op;
  const char* name;
  int create_only_own, create_only_other, no_delete_own, no_delete_other, own_files_own,
      own_files_other;
};

constexpr int A = 0;  // allowed
constexpr MadeRow kMade[] = {
    // Looking and listing: allowed (a create-only view filters what it shows: shows()).
    {Op::lookup, "lookup", A, A, A, A, A, A},
    {Op::getattr, "getattr", A, A, A, A, A, A},
    {Op::readdir, "readdir", A, A, A, A, A, A},
    {Op::statfs, "statfs", A, A, A, A, A, A},
    // Reading contents: a drop box reads only its own.
    {Op::readlink, "readlink", A, EACCES, A, A, A, A},
    {Op::open_read, "open_read", A, EACCES, A, A, A, A},
    {Op::read, "read", A, EACCES, A, A, A, A},
    {Op::getxattr, "getxattr", A, EACCES, A, A, A, A},
    {Op::listxattr, "listxattr", A, EACCES, A, A, A, A},
    // I/O on an open file: decided at its open.
    {Op::flush, "flush", A, A, A, A, A, A},
    {Op::fsync, "fsync", A, A, A, A, A, A},
    {Op::write, "write", A, A, A, A, A, A},
    {Op::fallocate, "fallocate", A, A, A, A, A, A},
    {Op::copy_into, "copy_into", A, A, A, A, A, A},
    // Adding an entry (asked of the parent directory): what every one of these modes is for.
    {Op::create, "create", A, A, A, A, A, A},
    {Op::mknod, "mknod", A, A, A, A, A, A},
    {Op::mkdir, "mkdir", A, A, A, A, A, A},
    {Op::symlink, "symlink", A, A, A, A, A, A},
    // Changing: a drop is sealed once closed; no-delete changes anything but removes nothing.
    {Op::open_write, "open_write", EPERM, EPERM, A, A, A, EPERM},
    {Op::truncate, "truncate", EPERM, EPERM, A, EPERM, A, EPERM},
    {Op::setattr, "setattr", A, EPERM, A, A, A, EPERM},
    {Op::setxattr, "setxattr", A, EPERM, A, A, A, EPERM},
    {Op::removexattr, "removexattr", A, EPERM, A, A, A, EPERM},
    {Op::link, "link", A, EPERM, A, A, A, EPERM},
    // Removing and moving (asked of the entry, and of a rename's replaced destination).
    {Op::unlink, "unlink", A, EPERM, A, EPERM, A, EPERM},
    {Op::rmdir, "rmdir", A, EPERM, A, EPERM, A, EPERM},
    {Op::rename, "rename", A, EPERM, A, EPERM, A, EPERM},
};

TEST(DecideMade, TableCoversEveryOp) {
  std::set<int> seen;
  for (const MadeRow& row : kMade) seen.insert(static_cast<int>(row.op));
  EXPECT_EQ(seen.size(), std::size(kOps));
}

TEST(DecideMade, EveryModeEveryOpEveryMaker) {
  for (const MadeRow& r : kMade) {
    EXPECT_EQ(decide_made(r.op, Access::create_only, Maker::app), Decision{r.create_only_own}) << r.name;
    EXPECT_EQ(decide_made(r.op, Access::create_only, Maker::other), Decision{r.create_only_other}) << r.name;
    EXPECT_EQ(decide_made(r.op, Access::no_delete, Maker::app), Decision{r.no_delete_own}) << r.name;
    EXPECT_EQ(decide_made(r.op, Access::no_delete, Maker::other), Decision{r.no_delete_other}) << r.name;
    EXPECT_EQ(decide_made(r.op, Access::own_files, Maker::app), Decision{r.own_files_own}) << r.name;
    EXPECT_EQ(decide_made(r.op, Access::own_files, Maker::other), Decision{r.own_files_other}) << r.name;
    // Modes that don't protect leave everything to decide().
    for (Access a : {Access::read, Access::read_write}) {
      for (Maker m : {Maker::app, Maker::other}) {
        EXPECT_EQ(decide_made(r.op, a, m), Decision{}) << r.name << " " << to_string(a);
      }
      EXPECT_FALSE(may_refuse(r.op, a)) << r.name;
    }
  }
}

TEST(DecideMade, MayRefuseOnlyWhereSomeMakerIsRefused) {
  for (const MadeRow& r : kMade) {
    EXPECT_EQ(may_refuse(r.op, Access::create_only), r.create_only_own != A || r.create_only_other != A) << r.name;
    EXPECT_EQ(may_refuse(r.op, Access::no_delete), r.no_delete_own != A || r.no_delete_other != A) << r.name;
    EXPECT_EQ(may_refuse(r.op, Access::own_files), r.own_files_own != A || r.own_files_other != A) << r.name;
  }
  // The hot paths of a no-delete view read no provenance.
  for (Op op : {Op::lookup, Op::getattr, Op::open_read, Op::open_write, Op::write, Op::create}) {
    EXPECT_FALSE(may_refuse(op, Access::no_delete));
  }
}

TEST(DecideMade, ACreateOnlyViewShowsDirectoriesAndItsOwnFilesOnly) {
  EXPECT_TRUE(shows(Access::create_only, Maker::app, false));
  EXPECT_TRUE(shows(Access::create_only, Maker::app, true));
  EXPECT_TRUE(shows(Access::create_only, Maker::other, true));
  EXPECT_FALSE(shows(Access::create_only, Maker::other, false));
  for (Access a : {Access::read, Access::read_write, Access::no_delete, Access::own_files}) {
    EXPECT_TRUE(shows(a, Maker::other, false)) << to_string(a);
  }
}

}  // namespace
}  // namespace portalfs::policy

namespace portalfs::policy {
namespace {

TEST(DecideSidecar, CreatesSidecarsChangesItsOwnAndNothingElse) {
  struct Row {
    Op op;
    const char* name;
    int own_sidecar, own_other_name, others_sidecar;
  };
  constexpr Row kRows[] = {
      {Op::create, "create", 0, EROFS, 0},  // create: only the name counts
      {Op::mknod, "mknod", 0, EROFS, 0},
      {Op::rename, "rename", 0, EROFS, EROFS},
      {Op::open_write, "open_write", 0, 0, EROFS},
      {Op::write, "write", 0, 0, EROFS},
      {Op::truncate, "truncate", 0, 0, EROFS},
      {Op::setattr, "setattr", 0, 0, EROFS},
      {Op::setxattr, "setxattr", 0, 0, EROFS},
      {Op::removexattr, "removexattr", 0, 0, EROFS},
      {Op::fallocate, "fallocate", 0, 0, EROFS},
      {Op::copy_into, "copy_into", 0, 0, EROFS},
      {Op::unlink, "unlink", 0, 0, EROFS},
      {Op::mkdir, "mkdir", EROFS, EROFS, EROFS},
      {Op::symlink, "symlink", EROFS, EROFS, EROFS},
      {Op::link, "link", EROFS, EROFS, EROFS},
      {Op::rmdir, "rmdir", EROFS, EROFS, EROFS},
  };
  for (const Row& r : kRows) {
    EXPECT_EQ(decide_sidecar(r.op, Maker::app, true), Decision{r.own_sidecar}) << r.name;
    EXPECT_EQ(decide_sidecar(r.op, Maker::app, false), Decision{r.own_other_name}) << r.name;
    EXPECT_EQ(decide_sidecar(r.op, Maker::other, true), Decision{r.others_sidecar}) << r.name;
  }
}

TEST(Sidecars, PatternsAreOneFileNameAndMatchWithoutHiddenFiles) {
  EXPECT_EQ(check_sidecar_pattern("*.xmp"), std::nullopt);
  EXPECT_EQ(check_sidecar_pattern("[Tt]humbs.db"), std::nullopt);
  for (std::string_view bad : {std::string_view(""), std::string_view("a/*.xmp"), std::string_view("."),
                               std::string_view(".."), std::string_view("a\0b", 3)}) {
    EXPECT_NE(check_sidecar_pattern(bad), std::nullopt) << bad;
  }
  EXPECT_NE(check_sidecar_pattern(std::string(256, 'x')), std::nullopt);
  const std::vector<std::string> patterns{"*.xmp", "*.nfo"};
  EXPECT_TRUE(is_sidecar(patterns, "IMG_1.xmp"));
  EXPECT_TRUE(is_sidecar(patterns, "movie.nfo"));
  EXPECT_FALSE(is_sidecar(patterns, "IMG_1.jpg"));
  EXPECT_FALSE(is_sidecar(patterns, "IMG_1.xmp.tmp"));
  EXPECT_FALSE(is_sidecar(patterns, ".IMG_1.xmp"));
  EXPECT_FALSE(is_sidecar({}, "IMG_1.xmp"));
}

TEST(Sidecars, AReadGrantWithSidecarsIsMountedReadWrite) {
  Grant g{GrantKind::shared, "photos", "/photos", Access::read, std::nullopt};
  EXPECT_TRUE(mounted_read_only(g));
  g.sidecars = {"*.xmp"};
  EXPECT_FALSE(mounted_read_only(g));
}

}  // namespace
}  // namespace portalfs::policy
