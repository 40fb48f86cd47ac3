// SPDX-License-Identifier: MIT
// The share trash's formats (policy/trash.hpp): retentions, records, ids.
#include "policy/trash.hpp"

#include <gtest/gtest.h>

namespace portalfs::policy {
namespace {

TEST(Retention, ParsesEachUnitAndOff) {
  EXPECT_EQ(parse_retention("30d"), 30 * 86400);
  EXPECT_EQ(parse_retention("12h"), 12 * 3600);
  EXPECT_EQ(parse_retention("45m"), 45 * 60);
  EXPECT_EQ(parse_retention("90s"), 90);
  EXPECT_EQ(parse_retention("3650d"), int64_t{3650} * 86400);
  EXPECT_EQ(parse_retention("off"), 0);
}

TEST(Retention, RefusesAnythingElseAndSaysWhatWasExpected) {
  for (const char* bad : {"", "d", "0d", "-1d", "+1d", "1", "1w", "1D", "01d", " 1d", "1d ", "1.5d", "Off",
                          "3651d", "99999999999999999999d", "1dd"}) {
    std::string expected;
    EXPECT_EQ(parse_retention(bad, &expected), std::nullopt) << bad;
    EXPECT_EQ(expected, "expected a retention like 30d, 12h, 45m or 90s (at most 3650d), or off") << bad;
  }
}

TEST(Retention, FormatsTheShortestExactForm) {
  EXPECT_EQ(format_retention(30 * 86400), "30d");
  EXPECT_EQ(format_retention(36 * 3600), "36h");
  EXPECT_EQ(format_retention(90), "90s");
  EXPECT_EQ(format_retention(120), "2m");
  EXPECT_EQ(format_retention(0), "off");
  for (const char* text : {"30d", "12h", "45m", "7s", "off"}) EXPECT_EQ(format_retention(*parse_retention(text)), text);
}

TEST(TrashRecord, RoundTripsAndIsStrict) {
  const TrashRecord r{"docs/a b.txt", "alpha", "docs", 1765000000, "file"};
  const std::string json = trash_record_json(r);
  EXPECT_EQ(json, R"({"app":"alpha","deleted_at":1765000000,"kind":"file","path":"docs/a b.txt","view":"docs"})" "\n");
  EXPECT_EQ(parse_trash_record(json), r);
  std::string problem;
  EXPECT_EQ(parse_trash_record("[]", &problem), std::nullopt);
  EXPECT_EQ(problem, "not a JSON object");
  EXPECT_EQ(parse_trash_record(R"({"path":"a","kind":"file","extra":1})", &problem), std::nullopt);
  EXPECT_EQ(problem, R"(unexpected or wrong-typed field "extra")");
  EXPECT_EQ(parse_trash_record(R"({"path":"a","kind":"file","deleted_at":"1"})", &problem), std::nullopt);
  EXPECT_EQ(parse_trash_record(R"({"kind":"file"})", &problem), std::nullopt);
  EXPECT_EQ(problem, R"("path" or "kind" missing)");
  EXPECT_EQ(parse_trash_record("{\"path\":", &problem), std::nullopt);
}

TEST(TrashId, IsTimeThenRandomAndValidated) {
  const std::string id = make_trash_id(1765060680, 0x1a2b3c4d);  // 2025-12-06 22:38:00 UTC
  EXPECT_EQ(id, "20251206-223800-1a2b3c4d");
  EXPECT_TRUE(valid_trash_id(id));
  EXPECT_TRUE(valid_trash_id(make_trash_id(0, 0)));
  for (const char* bad : {"", "20251206-223800-1a2b3c4", "20251206-223800-1a2b3c4dd", "20251206-223800-1A2B3C4D",
                          "20251206_223800-1a2b3c4d", "2025120a-223800-1a2b3c4d", "../../../etc/passwdxxxxxx",
                          "20251206-223800-1a2b3c4g"}) {
    EXPECT_FALSE(valid_trash_id(bad)) << bad;
  }
}

}  // namespace
}  // namespace portalfs::policy
