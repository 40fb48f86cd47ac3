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

TEST(AccessText, RoundTrips) {
  EXPECT_STREQ(to_string(Access::read), "read");
  EXPECT_STREQ(to_string(Access::read_write), "read-write");
  for (Access access : {Access::read, Access::read_write}) {
    EXPECT_EQ(parse_access(to_string(access)), access);
  }
}

TEST(AccessText, ParsesTheShortFormsAndNothingElse) {
  EXPECT_EQ(parse_access("ro"), Access::read);
  EXPECT_EQ(parse_access("rw"), Access::read_write);
  for (const char* bad : {"", "RW", "Read", "write", "read-only", "read_write", "readwrite",
                          " read", "read ", "r", "w"}) {
    EXPECT_EQ(parse_access(bad), std::nullopt) << '"' << bad << '"';
  }
}

TEST(GrantKindText, NamesEveryKind) {
  EXPECT_STREQ(to_string(GrantKind::data), "data");
  EXPECT_STREQ(to_string(GrantKind::shared), "shared");
  EXPECT_STREQ(to_string(GrantKind::host), "host");
}

}  // namespace
}  // namespace portalfs::policy
