// SPDX-License-Identifier: MIT
#include "policy/grant.hpp"

#include <gtest/gtest.h>

#include <set>

namespace portalfs::policy {
namespace {

Grant named(GrantKind kind, std::string name) {
  Grant grant;
  grant.kind = kind;
  grant.name = std::move(name);
  return grant;
}

TEST(ViewDirName, EscapesSlashAndPercent) {
  const struct {
    const char* name;
    const char* dir;
  } cases[] = {
      {"data", "data"},
      {"var/lib/mysql", "var%2Flib%2Fmysql"},
      {"data/documents", "data%2Fdocuments"},
      {"100%", "100%25"},
      {"a%2Fb", "a%252Fb"},
      {"own_media", "own_media"},
      {".config", ".config"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(view_dir_name(named(GrantKind::data, c.name)), c.dir) << c.name;
  }
}

TEST(ViewDirName, IsTheSameForEveryKind) {
  for (GrantKind kind : {GrantKind::data, GrantKind::shared, GrantKind::host}) {
    EXPECT_EQ(view_dir_name(named(kind, "a/b%")), "a%2Fb%25");
  }
}

TEST(ViewDirName, KeepsNamesThatLookAlikeDistinct) {
  // A literal "%2F" must not collide with an escaped '/', nor "%25" with an escaped '%'.
  const char* names[] = {"a/b", "a%2Fb", "a%252Fb", "a%", "a%25", "a/", "a%2F"};
  std::set<std::string> dirs;
  for (const char* name : names) dirs.insert(view_dir_name(named(GrantKind::data, name)));
  EXPECT_EQ(dirs.size(), std::size(names));
  for (const std::string& dir : dirs) EXPECT_EQ(dir.find('/'), std::string::npos) << dir;
}

constexpr Access kEveryMode[] = {Access::read, Access::read_write, Access::create_only,
                                 Access::no_delete, Access::own_files};

TEST(AccessText, RoundTrips) {
  EXPECT_STREQ(to_string(Access::read), "read");
  EXPECT_STREQ(to_string(Access::read_write), "read-write");
  EXPECT_STREQ(to_string(Access::create_only), "create-only");
  EXPECT_STREQ(to_string(Access::no_delete), "no-delete");
  EXPECT_STREQ(to_string(Access::own_files), "own-files");
  for (Access access : kEveryMode) {
    EXPECT_EQ(parse_access(to_string(access)), access);
    EXPECT_EQ(parse_access(to_string(access), false), access);
  }
  EXPECT_EQ(access_names(), "read, read-write, create-only, no-delete, own-files");
}

TEST(AccessText, ParsesTheShortFormsOnTheCommandLineOnlyAndNothingElse) {
  EXPECT_EQ(parse_access("ro"), Access::read);
  EXPECT_EQ(parse_access("rw"), Access::read_write);
  EXPECT_EQ(parse_access("ro", false), std::nullopt);
  EXPECT_EQ(parse_access("rw", false), std::nullopt);
  for (const char* bad : {"", "RW", "Read", "write", "read-only", "read_write", "readwrite",
                          " read", "read ", "r", "w", "create_only", "nodelete", "own"}) {
    EXPECT_EQ(parse_access(bad), std::nullopt) << '"' << bad << '"';
  }
}

TEST(AccessModes, WritesProtectsAndShortText) {
  EXPECT_FALSE(writes(Access::read));
  EXPECT_FALSE(protects(Access::read));
  EXPECT_TRUE(writes(Access::read_write));
  EXPECT_FALSE(protects(Access::read_write));
  for (Access a : {Access::create_only, Access::no_delete, Access::own_files}) {
    EXPECT_TRUE(writes(a)) << to_string(a);
    EXPECT_TRUE(protects(a)) << to_string(a);
  }
  EXPECT_EQ(short_text(Access::read), "ro");
  EXPECT_EQ(short_text(Access::read_write), "rw");
  EXPECT_EQ(short_text(Access::no_delete), "rw (no-delete)");
}

TEST(AccessModes, NarrowerIsTakingARightAway) {
  // read-write allows everything: every other mode is narrower, and it is narrower than none.
  for (Access a : kEveryMode) {
    EXPECT_FALSE(narrower(Access::read_write, a)) << to_string(a);
    EXPECT_EQ(narrower(a, Access::read_write), a != Access::read_write) << to_string(a);
    EXPECT_FALSE(narrower(a, a)) << to_string(a);
  }
  EXPECT_TRUE(narrower(Access::own_files, Access::no_delete));   // changing others' files
  EXPECT_FALSE(narrower(Access::no_delete, Access::own_files));
  EXPECT_TRUE(narrower(Access::read, Access::own_files));        // creating
  EXPECT_FALSE(narrower(Access::own_files, Access::read));
  EXPECT_TRUE(narrower(Access::create_only, Access::read));      // reading others' files
  EXPECT_TRUE(narrower(Access::read, Access::create_only));      // creating
}

TEST(GrantKindText, NamesEveryKind) {
  EXPECT_STREQ(to_string(GrantKind::data), "data");
  EXPECT_STREQ(to_string(GrantKind::shared), "shared");
  EXPECT_STREQ(to_string(GrantKind::host), "host");
}

}  // namespace
}  // namespace portalfs::policy
