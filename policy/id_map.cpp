// SPDX-License-Identifier: MIT
// Id maps. A map keeps its ranges twice, sorted by inside and by outside, so both directions
// are one binary search. make() refuses overlaps on either side, which is what makes the map a
// bijection between the covered ids and lets each lookup stop at the single candidate range.

#include "policy/id_map.hpp"

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <nlohmann/json.hpp>

namespace portalfs::policy {
namespace {

std::string range_text(const IdRange& r) {
  return std::to_string(r.inside) + ":" + std::to_string(r.outside) + ":" + std::to_string(r.count);
}

// User text in an error phrase: quoted and escaped, so the phrase stays on one line.
std::string json_string(std::string_view text) {
  return nlohmann::json(std::string(text))
      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

bool fail(std::string* error, std::string message) {
  if (error != nullptr) *error = std::move(message);
  return false;
}

// The checks of a single range. Written as subtractions so nothing wraps at 2^32.
bool check_range(const IdRange& r, std::string* error) {
  if (r.count == 0) return fail(error, "range " + range_text(r) + " has a count of 0");
  if (r.inside > kMaxId || r.count - 1 > kMaxId - r.inside ||
      r.outside > kMaxId || r.count - 1 > kMaxId - r.outside) {
    return fail(error, "range " + range_text(r) + " runs past " + std::to_string(kMaxId));
  }
  return true;
}

// `sorted` is ordered by `side` and every range passed check_range(), so only neighbours can
// overlap and last() can't wrap.
bool check_disjoint(const std::vector<IdRange>& sorted, uint32_t IdRange::*side,
                    const char* side_name, std::string* error) {
  for (std::size_t i = 1; i < sorted.size(); ++i) {
    const IdRange& prev = sorted[i - 1];
    const IdRange& cur = sorted[i];
    if (prev.*side + (prev.count - 1) >= cur.*side) {
      return fail(error, "ranges " + range_text(prev) + " and " + range_text(cur) + " overlap " +
                             side_name);
    }
  }
  return true;
}

std::optional<uint32_t> lookup(const std::vector<IdRange>& sorted, uint32_t id,
                               uint32_t IdRange::*from, uint32_t IdRange::*to) {
  // The candidate is the last range starting at or below id.
  auto it = std::upper_bound(sorted.begin(), sorted.end(), id,
                             [from](uint32_t value, const IdRange& r) { return value < r.*from; });
  if (it == sorted.begin()) return std::nullopt;
  --it;
  const uint32_t offset = id - (*it).*from;
  if (offset >= it->count) return std::nullopt;
  return (*it).*to + offset;
}

// One decimal field of "inside:outside:count": digits only (no sign, no space), within `max`.
std::optional<uint32_t> parse_field(std::string_view text, const char* field, uint32_t max,
                                    std::string* error) {
  const bool digits = !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
    return c >= '0' && c <= '9';
  });
  if (!digits) {
    fail(error,
         std::string("expected a decimal number for ") + field + ", got " + json_string(text));
    return std::nullopt;
  }
  uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value > max) {
    fail(error, std::string("expected ") + field + " at most " + std::to_string(max) + ", got " +
                    std::string(text));
    return std::nullopt;
  }
  return static_cast<uint32_t>(value);
}

}  // namespace

std::optional<IdMap> IdMap::make(std::vector<IdRange> ranges, std::string* error) {
  for (const IdRange& r : ranges) {
    if (!check_range(r, error)) return std::nullopt;
  }
  IdMap map;
  map.by_inside_ = ranges;
  std::sort(map.by_inside_.begin(), map.by_inside_.end(),
            [](const IdRange& a, const IdRange& b) { return a.inside < b.inside; });
  if (!check_disjoint(map.by_inside_, &IdRange::inside, "inside", error)) return std::nullopt;
  map.by_outside_ = std::move(ranges);
  std::sort(map.by_outside_.begin(), map.by_outside_.end(),
            [](const IdRange& a, const IdRange& b) { return a.outside < b.outside; });
  if (!check_disjoint(map.by_outside_, &IdRange::outside, "outside", error)) return std::nullopt;
  return map;
}

std::optional<IdRange> IdMap::parse_range(std::string_view text, std::string* error) {
  const auto first = text.find(':');
  const auto second = first == std::string_view::npos ? first : text.find(':', first + 1);
  if (second == std::string_view::npos || text.find(':', second + 1) != std::string_view::npos) {
    fail(error, "expected inside:outside:count, got " + json_string(text));
    return std::nullopt;
  }
  // count may be 2^32-1: 0:0:4294967295 covers every id, like the kernel's full uid_map.
  const auto inside = parse_field(text.substr(0, first), "inside", kMaxId, error);
  if (!inside) return std::nullopt;
  const auto outside =
      parse_field(text.substr(first + 1, second - first - 1), "outside", kMaxId, error);
  if (!outside) return std::nullopt;
  const auto count = parse_field(text.substr(second + 1), "count", UINT32_MAX, error);
  if (!count) return std::nullopt;
  const IdRange range{*inside, *outside, *count};
  if (!check_range(range, error)) return std::nullopt;
  return range;
}

// The identity map covers 0..kMaxId, as the kernel's "0 0 4294967295" does: (uint32_t)-1 is
// "no change" to chown, never an id, so it is not mapped in either direction.
std::optional<uint32_t> IdMap::to_disk(uint32_t host_id) const {
  if (is_identity()) return host_id <= kMaxId ? std::optional(host_id) : std::nullopt;
  return lookup(by_outside_, host_id, &IdRange::outside, &IdRange::inside);
}

std::optional<uint32_t> IdMap::to_host(uint32_t disk_id) const {
  if (is_identity()) return disk_id <= kMaxId ? std::optional(disk_id) : std::nullopt;
  return lookup(by_inside_, disk_id, &IdRange::inside, &IdRange::outside);
}

std::string IdMap::to_string() const {
  if (is_identity()) return "identity";
  std::string out;
  for (const IdRange& r : by_inside_) {
    if (!out.empty()) out += ',';
    out += range_text(r);
  }
  return out;
}

}  // namespace portalfs::policy
