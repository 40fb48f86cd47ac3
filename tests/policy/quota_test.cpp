// SPDX-License-Identifier: MIT
#include "policy/quota.hpp"

#include <cerrno>
#include <cstdint>

#include <gtest/gtest.h>

namespace portalfs::policy {
namespace {

TEST(ParseSize, UnitsArePowersOf1024) {
  EXPECT_EQ(parse_size("1048576"), 1048576u);
  EXPECT_EQ(parse_size("64K"), 65536u);
  EXPECT_EQ(parse_size("500M"), 500ull << 20);
  EXPECT_EQ(parse_size("10G"), 10ull << 30);
  EXPECT_EQ(parse_size("10g"), 10ull << 30);
  EXPECT_EQ(parse_size("10GB"), 10ull << 30);
  EXPECT_EQ(parse_size("10GiB"), 10ull << 30);
  EXPECT_EQ(parse_size("2T"), 2ull << 40);
  EXPECT_EQ(parse_size("1024P"), 1ull << 60);
}

TEST(ParseSize, RefusesWhatIsNotASize) {
  for (const char* bad : {"", "0", "0G", "G", "-1", "+5", "1.5G", "10X", "10 G", "10GG", "10Gi", " 1", "1025P",
                          "99999999999999999999", "1e6"}) {
    std::string expected;
    EXPECT_EQ(parse_size(bad, &expected), std::nullopt) << bad;
    EXPECT_NE(expected.find("expected a size like 10G"), std::string::npos) << bad;
  }
}

TEST(FormatSize, ShortestExactForm) {
  EXPECT_EQ(format_size(10ull << 30), "10G");
  EXPECT_EQ(format_size(1536ull << 20), "1536M");
  EXPECT_EQ(format_size(1500), "1500");
  EXPECT_EQ(format_size(1ull << 60), "1024P");
  for (uint64_t v : {1ull, 4096ull, 123456789ull, 7ull << 40}) EXPECT_EQ(parse_size(format_size(v)), v);
}

TEST(QuotaKey, RoundTrips) {
  EXPECT_EQ((QuotaTarget{QuotaKind::app, "notes"}.key()), "apps/notes");
  EXPECT_EQ((QuotaTarget{QuotaKind::share, "docs"}.key()), "shared/docs");
  EXPECT_EQ(parse_quota_key("apps/notes"), (QuotaTarget{QuotaKind::app, "notes"}));
  EXPECT_EQ(parse_quota_key("shared/docs"), (QuotaTarget{QuotaKind::share, "docs"}));
  EXPECT_EQ((QuotaTarget{QuotaKind::app_share, "docs", "notes"}.key()), "notes:docs");
  EXPECT_EQ(parse_quota_key("notes:docs"), (QuotaTarget{QuotaKind::app_share, "docs", "notes"}));
  for (const char* bad : {"", "apps/", "notes", "apps/a/b", "share/docs", "app_data/x", ":docs", "notes:", "a:b:c",
                          "apps/notes:docs", "notes:shared/docs"}) {
    EXPECT_EQ(parse_quota_key(bad), std::nullopt) << bad;
  }
}

TEST(ProjectIds, LowestFreeFromTheFirst) {
  EXPECT_EQ(next_project_id({}), kFirstProjectId);
  EXPECT_EQ(next_project_id({5, 7}), kFirstProjectId);
  EXPECT_EQ(next_project_id({kFirstProjectId, kFirstProjectId + 1, kFirstProjectId + 3}), kFirstProjectId + 2);
  EXPECT_EQ(next_project_id({kFirstProjectId + 1}), kFirstProjectId);
}

TEST(WarningLevel, NinetyAndHundredOfEitherLimit) {
  EXPECT_EQ(warning_level(89, 100, 0, 0), 0);
  EXPECT_EQ(warning_level(90, 100, 0, 0), 90);
  EXPECT_EQ(warning_level(99, 100, 0, 0), 90);
  EXPECT_EQ(warning_level(100, 100, 0, 0), 100);
  EXPECT_EQ(warning_level(150, 100, 0, 0), 100);
  EXPECT_EQ(warning_level(1, 100, 9, 10), 90);
  EXPECT_EQ(warning_level(1, 0, 10, 10), 100);
  EXPECT_EQ(warning_level(1000, 0, 1000, 0), 0);  // no limits, no warnings
  EXPECT_EQ(percent_of(1, 3), 33);
  EXPECT_EQ(percent_of(UINT64_MAX, 1ull << 60), 1500);
}

TEST(QuotaAdmits, FreeingAlwaysAndAddingUpToTheLimitExactly) {
  const QuotaLimits limits{1000, 10};
  EXPECT_EQ(quota_admits(900, 0, 100, 0, limits), 0);      // exactly at the limit
  EXPECT_EQ(quota_admits(900, 0, 101, 0, limits), EDQUOT);  // one byte beyond
  EXPECT_EQ(quota_admits(0, 10, 0, 1, limits), EDQUOT);    // inodes
  EXPECT_EQ(quota_admits(2000, 20, -5, -1, limits), 0);     // over a lowered limit: may free
  EXPECT_EQ(quota_admits(5, 5, 1 << 30, 1000, QuotaLimits{}), 0);  // no limit
}

TEST(QuotaWritable, CutsAWriteExactlyAtTheLimit) {
  EXPECT_EQ(writable_within(100, 100, 50, 1000), 50u);  // fits
  EXPECT_EQ(writable_within(100, 100, 50, 20), 20u);    // short write up to the limit
  EXPECT_EQ(writable_within(100, 100, 50, 0), 0u);      // EDQUOT
  EXPECT_EQ(writable_within(100, 0, 50, 0), 50u);       // rewriting costs nothing
  EXPECT_EQ(writable_within(100, 80, 50, 10), 30u);     // partly a rewrite
  EXPECT_EQ(writable_within(100, 200, 10, 50), 0u);     // the hole alone is beyond the limit
  EXPECT_EQ(writable_within(0, 0, 10, UINT64_MAX), 10u);
  EXPECT_EQ(room_left(10, 0), UINT64_MAX);
  EXPECT_EQ(room_left(10, 5), 0u);
}

}  // namespace
}  // namespace portalfs::policy
