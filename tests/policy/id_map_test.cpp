// SPDX-License-Identifier: MIT
#include "policy/id_map.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>

namespace portalfs::policy {
namespace {

constexpr uint32_t kNoChange = UINT32_MAX;  // (uint32_t)-1, chown's "leave it"

IdMap make_or_die(std::vector<IdRange> ranges) {
  std::string error;
  auto map = IdMap::make(std::move(ranges), &error);
  if (!map) ADD_FAILURE() << error;
  return map.value_or(IdMap{});
}

TEST(IdMap, DefaultIsIdentity) {
  const IdMap map;
  EXPECT_TRUE(map.is_identity());
  EXPECT_TRUE(map.ranges().empty());
  EXPECT_EQ(map.to_string(), "identity");
  for (uint32_t id : {0u, 1u, 1000u, kOverflowId, 100000u, kMaxId}) {
    EXPECT_EQ(map.to_disk(id), id);
    EXPECT_EQ(map.to_host(id), id);
    EXPECT_EQ(map.present(id), id);
  }
}

TEST(IdMap, IdentityDoesNotMapTheNoChangeValue) {
  const IdMap map;
  EXPECT_EQ(map.to_disk(kNoChange), std::nullopt);
  EXPECT_EQ(map.to_host(kNoChange), std::nullopt);
  EXPECT_EQ(map.present(kNoChange), kOverflowId);
}

TEST(IdMap, MakeWithNoRangesIsIdentity) {
  const auto map = IdMap::make({});
  ASSERT_TRUE(map);
  EXPECT_TRUE(map->is_identity());
  EXPECT_EQ(*map, IdMap{});
}

TEST(IdMap, OneRangeBothDirections) {
  const IdMap map = make_or_die({{0, 100000, 65536}});
  EXPECT_FALSE(map.is_identity());
  EXPECT_EQ(map.to_string(), "0:100000:65536");
  EXPECT_EQ(map.to_disk(101000), 1000u);
  EXPECT_EQ(map.to_host(1000), 101000u);
  EXPECT_EQ(map.to_disk(100000), 0u);
  EXPECT_EQ(map.to_disk(165535), 65535u);
  EXPECT_EQ(map.to_disk(165536), std::nullopt);
  EXPECT_EQ(map.to_disk(99999), std::nullopt);
  EXPECT_EQ(map.to_disk(0), std::nullopt);
  EXPECT_EQ(map.to_host(65535), 165535u);
  EXPECT_EQ(map.to_host(65536), std::nullopt);
  EXPECT_EQ(map.present(65536), kOverflowId);
  EXPECT_EQ(map.present(0), 100000u);
}

TEST(IdMap, SeveralRangesSortedByInside) {
  const IdMap map = make_or_die({{1000, 5000, 10}, {0, 100000, 1000}, {2000, 0, 1}});
  EXPECT_EQ(map.to_string(), "0:100000:1000,1000:5000:10,2000:0:1");
  ASSERT_EQ(map.ranges().size(), 3u);
  EXPECT_EQ(map.ranges().front(), (IdRange{0, 100000, 1000}));
  EXPECT_EQ(map.to_disk(0), 2000u);
  EXPECT_EQ(map.to_disk(5009), 1009u);
  EXPECT_EQ(map.to_disk(5010), std::nullopt);
  EXPECT_EQ(map.to_disk(100999), 999u);
  EXPECT_EQ(map.to_host(2000), 0u);
  EXPECT_EQ(map.to_host(1010), std::nullopt);
  EXPECT_EQ(map.to_host(1999), std::nullopt);
}

TEST(IdMap, EqualityIgnoresInputOrder) {
  EXPECT_EQ(make_or_die({{0, 100, 10}, {10, 0, 10}}), make_or_die({{10, 0, 10}, {0, 100, 10}}));
  EXPECT_NE(make_or_die({{0, 100, 10}}), make_or_die({{0, 100, 11}}));
  EXPECT_NE(make_or_die({{0, 100, 10}}), IdMap{});
}

TEST(IdMap, TopOfTheIdSpace) {
  const IdMap map = make_or_die({{kMaxId, 0, 1}, {0, kMaxId, 1}});
  EXPECT_EQ(map.to_disk(0), kMaxId);
  EXPECT_EQ(map.to_host(kMaxId), 0u);
  EXPECT_EQ(map.to_host(0), kMaxId);
  EXPECT_EQ(map.to_disk(kMaxId), 0u);
  EXPECT_EQ(map.to_disk(kNoChange), std::nullopt);
  EXPECT_EQ(map.to_host(kNoChange), std::nullopt);
}

TEST(IdMap, FullRangeCoversEveryId) {
  const IdMap map = make_or_die({{0, 0, UINT32_MAX}});
  EXPECT_EQ(map.to_disk(kMaxId), kMaxId);
  EXPECT_EQ(map.to_disk(kNoChange), std::nullopt);
}

struct MakeCase {
  const char* test_name;
  std::vector<IdRange> ranges;
  const char* error;  // "" when valid
};

class IdMapMake : public ::testing::TestWithParam<MakeCase> {};

TEST_P(IdMapMake, ChecksRanges) {
  const MakeCase& c = GetParam();
  std::string error;
  const auto map = IdMap::make(c.ranges, &error);
  if (*c.error == '\0') {
    EXPECT_TRUE(map) << error;
    EXPECT_EQ(error, "");
  } else {
    EXPECT_FALSE(map);
    EXPECT_EQ(error, c.error);
    EXPECT_FALSE(IdMap::make(c.ranges)) << "a null error pointer changes nothing";
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, IdMapMake,
    ::testing::Values(
        MakeCase{"single", {{0, 100000, 65536}}, ""},
        MakeCase{"count_zero", {{5, 5, 0}}, "range 5:5:0 has a count of 0"},
        MakeCase{"count_zero_after_good", {{0, 0, 1}, {5, 5, 0}}, "range 5:5:0 has a count of 0"},
        MakeCase{"last_id_inside", {{4294967294u, 0, 1}}, ""},
        MakeCase{"past_last_id_inside", {{4294967294u, 0, 2}}, "range 4294967294:0:2 runs past 4294967294"},
        MakeCase{"last_id_outside", {{0, 4294967294u, 1}}, ""},
        MakeCase{"past_last_id_outside", {{0, 4294967294u, 2}}, "range 0:4294967294:2 runs past 4294967294"},
        MakeCase{"no_change_value_inside", {{UINT32_MAX, 0, 1}}, "range 4294967295:0:1 runs past 4294967294"},
        MakeCase{"no_change_value_outside", {{0, UINT32_MAX, 1}}, "range 0:4294967295:1 runs past 4294967294"},
        MakeCase{"full_range", {{0, 0, UINT32_MAX}}, ""},
        MakeCase{"full_range_shifted", {{1, 0, UINT32_MAX}}, "range 1:0:4294967295 runs past 4294967294"},
        MakeCase{"huge_count_would_wrap", {{100, 100, UINT32_MAX - 50}}, "range 100:100:4294967245 runs past 4294967294"},
        MakeCase{"adjacent", {{0, 100, 10}, {10, 110, 10}}, ""},
        MakeCase{"overlap_inside", {{0, 100000, 65536}, {1000, 200000, 10}},
                 "ranges 0:100000:65536 and 1000:200000:10 overlap inside"},
        MakeCase{"overlap_inside_by_one", {{0, 100, 10}, {9, 200, 1}}, "ranges 0:100:10 and 9:200:1 overlap inside"},
        MakeCase{"overlap_inside_any_order", {{1000, 200000, 10}, {0, 100000, 65536}},
                 "ranges 0:100000:65536 and 1000:200000:10 overlap inside"},
        MakeCase{"same_inside", {{7, 100, 1}, {7, 200, 1}}, "ranges 7:100:1 and 7:200:1 overlap inside"},
        MakeCase{"overlap_outside", {{0, 100000, 10}, {100, 100005, 10}},
                 "ranges 0:100000:10 and 100:100005:10 overlap outside"},
        MakeCase{"overlap_outside_by_one", {{100, 9, 1}, {0, 0, 10}}, "ranges 0:0:10 and 100:9:1 overlap outside"},
        MakeCase{"crossed_but_disjoint", {{0, 1000, 10}, {1000, 0, 10}}, ""},
        MakeCase{"inside_checked_before_outside", {{0, 0, 10}, {5, 5, 1}},
                 "ranges 0:0:10 and 5:5:1 overlap inside"}),
    [](const auto& test_info) { return std::string(test_info.param.test_name); });

struct ParseCase {
  const char* test_name;
  const char* text;
  std::optional<IdRange> range;
  const char* error;  // "" when valid
};

class IdMapParseRange : public ::testing::TestWithParam<ParseCase> {};

TEST_P(IdMapParseRange, IsStrict) {
  const ParseCase& c = GetParam();
  std::string error;
  EXPECT_EQ(IdMap::parse_range(c.text, &error), c.range);
  EXPECT_EQ(error, c.error);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, IdMapParseRange,
    ::testing::Values(
        ParseCase{"typical", "0:100000:65536", IdRange{0, 100000, 65536}, ""},
        ParseCase{"leading_zeros", "007:0100:01", IdRange{7, 100, 1}, ""},
        ParseCase{"last_id", "4294967294:0:1", IdRange{4294967294u, 0, 1}, ""},
        ParseCase{"full_range", "0:0:4294967295", IdRange{0, 0, UINT32_MAX}, ""},
        ParseCase{"runs_past", "4294967294:0:2", std::nullopt, "range 4294967294:0:2 runs past 4294967294"},
        ParseCase{"runs_past_outside", "0:4294967290:6", std::nullopt, "range 0:4294967290:6 runs past 4294967294"},
        ParseCase{"count_zero", "1:2:0", std::nullopt, "range 1:2:0 has a count of 0"},
        ParseCase{"empty", "", std::nullopt, R"(expected inside:outside:count, got "")"},
        ParseCase{"two_parts", "1:2", std::nullopt, R"(expected inside:outside:count, got "1:2")"},
        ParseCase{"four_parts", "1:2:3:4", std::nullopt, R"(expected inside:outside:count, got "1:2:3:4")"},
        ParseCase{"commas", "1,2,3", std::nullopt, R"(expected inside:outside:count, got "1,2,3")"},
        ParseCase{"empty_inside", ":2:3", std::nullopt, R"(expected a decimal number for inside, got "")"},
        ParseCase{"empty_outside", "1::3", std::nullopt, R"(expected a decimal number for outside, got "")"},
        ParseCase{"empty_count", "1:2:", std::nullopt, R"(expected a decimal number for count, got "")"},
        ParseCase{"leading_space", " 1:2:3", std::nullopt, R"(expected a decimal number for inside, got " 1")"},
        ParseCase{"inner_space", "1: 2:3", std::nullopt, R"(expected a decimal number for outside, got " 2")"},
        ParseCase{"trailing_newline", "1:2:3\n", std::nullopt, R"(expected a decimal number for count, got "3\n")"},
        ParseCase{"plus", "+1:2:3", std::nullopt, R"(expected a decimal number for inside, got "+1")"},
        ParseCase{"minus", "1:-2:3", std::nullopt, R"(expected a decimal number for outside, got "-2")"},
        ParseCase{"hex", "0x10:0:1", std::nullopt, R"(expected a decimal number for inside, got "0x10")"},
        ParseCase{"letters", "a:b:c", std::nullopt, R"(expected a decimal number for inside, got "a")"},
        ParseCase{"inside_too_big", "4294967295:0:1", std::nullopt, "expected inside at most 4294967294, got 4294967295"},
        ParseCase{"outside_too_big", "0:4294967295:1", std::nullopt, "expected outside at most 4294967294, got 4294967295"},
        ParseCase{"count_too_big", "0:0:4294967296", std::nullopt, "expected count at most 4294967295, got 4294967296"},
        ParseCase{"beyond_64_bits", "99999999999999999999999:0:1", std::nullopt,
                  "expected inside at most 4294967294, got 99999999999999999999999"}),
    [](const auto& test_info) { return std::string(test_info.param.test_name); });

TEST(IdMap, ParseRangeAcceptsANullErrorPointer) {
  EXPECT_EQ(IdMap::parse_range("x"), std::nullopt);
  EXPECT_EQ(IdMap::parse_range("1:2:3"), (IdRange{1, 2, 3}));
}

// to_string() -> split at ',' -> parse_range() -> make() gives the same map back.
TEST(IdMap, TextRoundTrip) {
  for (const std::vector<IdRange>& ranges : std::vector<std::vector<IdRange>>{
           {{0, 100000, 65536}},
           {{1000, 5000, 10}, {0, 100000, 1000}, {2000, 0, 1}},
           {{kMaxId, 0, 1}, {0, kMaxId, 1}},
           {{0, 0, UINT32_MAX}}}) {
    const IdMap map = make_or_die(ranges);
    const std::string text = map.to_string();
    std::vector<IdRange> parsed;
    for (std::size_t start = 0; start <= text.size();) {
      const std::size_t end = std::min(text.find(',', start), text.size());
      std::string error;
      const auto range = IdMap::parse_range(text.substr(start, end - start), &error);
      ASSERT_TRUE(range) << error;
      parsed.push_back(*range);
      start = end + 1;
    }
    EXPECT_EQ(make_or_die(parsed), map) << text;
    EXPECT_EQ(parsed, map.ranges()) << text;
  }
}

// Covered ids go there and back; uncovered ones stay uncovered in both directions.
TEST(IdMap, LookupRoundTrip) {
  const IdMap map = make_or_die({{0, 100000, 65536}, {65536, 50, 10}});
  for (uint32_t disk : {0u, 1u, 1000u, 65535u, 65536u, 65545u}) {
    const auto host = map.to_host(disk);
    ASSERT_TRUE(host) << disk;
    EXPECT_EQ(map.to_disk(*host), disk);
  }
  for (uint32_t host : {100000u, 165535u, 50u, 59u}) {
    const auto disk = map.to_disk(host);
    ASSERT_TRUE(disk) << host;
    EXPECT_EQ(map.to_host(*disk), host);
  }
  EXPECT_EQ(map.to_host(65546), std::nullopt);
  EXPECT_EQ(map.to_disk(60), std::nullopt);
  EXPECT_EQ(map.to_disk(49), std::nullopt);
}

std::optional<uint32_t> brute_force(const std::vector<IdRange>& ranges, uint32_t id, bool to_disk) {
  for (const IdRange& r : ranges) {
    const uint64_t from = to_disk ? r.outside : r.inside;
    const uint64_t to = to_disk ? r.inside : r.outside;
    if (id >= from && id < from + r.count) return static_cast<uint32_t>(to + (id - from));
  }
  return std::nullopt;
}

// Random disjoint ranges, in random order on each side: the binary searches must agree with a
// scan over every range, at every range edge and at random ids.
TEST(IdMap, LookupMatchesBruteForce) {
  std::mt19937 rng(20240611);
  auto below = [&](uint32_t bound) { return static_cast<uint32_t>(rng() % bound); };
  for (int round = 0; round < 50; ++round) {
    const std::size_t n = 1 + below(64);
    // Cut the id space into n slots; each range gets a random slot on each side and a random
    // place inside it.
    std::vector<uint32_t> counts(n);
    std::vector<uint32_t> inside(n);
    std::vector<uint32_t> outside(n);
    const uint32_t slot = kMaxId / static_cast<uint32_t>(n);
    for (std::size_t i = 0; i < n; ++i) {
      counts[i] = 1 + below(std::min<uint32_t>(slot, 100000));
    }
    std::vector<std::size_t> inside_slot(n);
    std::vector<std::size_t> outside_slot(n);
    std::iota(inside_slot.begin(), inside_slot.end(), 0);
    std::iota(outside_slot.begin(), outside_slot.end(), 0);
    std::shuffle(inside_slot.begin(), inside_slot.end(), rng);
    std::shuffle(outside_slot.begin(), outside_slot.end(), rng);
    std::vector<IdRange> ranges;
    for (std::size_t i = 0; i < n; ++i) {
      const uint32_t in_base = static_cast<uint32_t>(inside_slot[i]) * slot;
      const uint32_t out_base = static_cast<uint32_t>(outside_slot[i]) * slot;
      ranges.push_back({in_base + below(slot - counts[i] + 1), out_base + below(slot - counts[i] + 1), counts[i]});
    }
    const IdMap map = make_or_die(ranges);

    std::vector<uint32_t> probes = {0, 1, kMaxId, UINT32_MAX};
    for (const IdRange& r : ranges) {
      for (uint32_t base : {r.inside, r.outside}) {
        probes.push_back(base);
        probes.push_back(base + r.count - 1);
        probes.push_back(base + r.count);
        if (base > 0) probes.push_back(base - 1);
      }
    }
    for (int i = 0; i < 2000; ++i) probes.push_back(below(UINT32_MAX));
    for (uint32_t id : probes) {
      ASSERT_EQ(map.to_disk(id), brute_force(ranges, id, true)) << "host " << id << " in " << map.to_string();
      ASSERT_EQ(map.to_host(id), brute_force(ranges, id, false)) << "disk " << id << " in " << map.to_string();
    }
  }
}

}  // namespace
}  // namespace portalfs::policy
