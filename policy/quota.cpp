// SPDX-License-Identifier: MIT
#include "policy/quota.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <utility>

namespace portalfs::policy {

namespace {
constexpr uint64_t kMaxSize = uint64_t{1} << 60;
constexpr const char kUnits[] = "KMGTP";  // K = 2^10 ... P = 2^50
}  // namespace

std::optional<uint64_t> parse_size(std::string_view text, std::string* expected) {
  auto fail = [&]() -> std::optional<uint64_t> {
    if (expected) *expected = "expected a size like 10G, 500M, 64K or 1048576 (bytes), at least 1 and at most 1024P";
    return std::nullopt;
  };
  uint64_t number = 0;
  const char* end = text.data() + text.size();
  const auto [rest, ec] = std::from_chars(text.data(), end, number);
  if (ec != std::errc() || rest == text.data()) return fail();
  std::string_view unit(rest, static_cast<std::size_t>(end - rest));
  unsigned shift = 0;
  if (!unit.empty()) {
    const char u = static_cast<char>(unit.front() & ~0x20);  // upper case
    const std::string_view units(kUnits);
    const auto pos = units.find(u);
    if (pos == std::string_view::npos) return fail();
    shift = 10 * static_cast<unsigned>(pos + 1);
    unit.remove_prefix(1);
    if (unit == "iB" || unit == "B" || unit == "b") unit = {};
    if (!unit.empty()) return fail();
  }
  if (number == 0 || number > (kMaxSize >> shift)) return fail();
  return number << shift;
}

std::string format_size(uint64_t bytes) {
  unsigned shift = 0;
  while (shift < 50 && bytes != 0 && (bytes & ((uint64_t{1} << (shift + 10)) - 1)) == 0) shift += 10;
  if (shift == 0) return std::to_string(bytes);
  return std::to_string(bytes >> shift) + kUnits[shift / 10 - 1];
}

std::string QuotaTarget::key() const {
  if (kind == QuotaKind::app_share) return app + ":" + name;
  return (kind == QuotaKind::app ? "apps/" : "shared/") + name;
}

std::optional<QuotaTarget> parse_quota_key(std::string_view key) {
  if (const auto colon = key.find(':'); colon != std::string_view::npos) {
    const std::string_view app = key.substr(0, colon), share = key.substr(colon + 1);
    if (app.empty() || share.empty() || key.find_first_of(":/", colon + 1) != std::string_view::npos ||
        app.find('/') != std::string_view::npos) {
      return std::nullopt;
    }
    return QuotaTarget{QuotaKind::app_share, std::string(share), std::string(app)};
  }
  for (const auto& [prefix, kind] : {std::pair{std::string_view("apps/"), QuotaKind::app},
                                     std::pair{std::string_view("shared/"), QuotaKind::share}}) {
    if (!key.starts_with(prefix)) continue;
    const std::string_view name = key.substr(prefix.size());
    if (name.empty() || name.find('/') != std::string_view::npos) return std::nullopt;
    return QuotaTarget{kind, std::string(name)};
  }
  return std::nullopt;
}

std::optional<uint32_t> next_project_id(const std::set<uint32_t>& taken) {
  uint32_t id = kFirstProjectId;
  for (auto it = taken.lower_bound(id); it != taken.end() && *it == id; ++it) {
    if (id == kLastProjectId) return std::nullopt;
    ++id;
  }
  return id;
}

int percent_of(uint64_t used, uint64_t limit) {
  if (limit == 0) return 0;
  // used * 100 overflows only beyond 2^57 bytes used; divide first there.
  const uint64_t pct = used < (UINT64_MAX / 100) ? used * 100 / limit : used / limit * 100;
  return pct > 100000 ? 100000 : static_cast<int>(pct);
}

int warning_level(uint64_t bytes, uint64_t byte_limit, uint64_t inodes, uint64_t inode_limit) {
  const int pct = std::max(percent_of(bytes, byte_limit), percent_of(inodes, inode_limit));
  return pct >= 100 ? 100 : pct >= 90 ? 90 : 0;
}

int quota_admits(uint64_t used_bytes, uint64_t used_inodes, int64_t add_bytes, int64_t add_inodes,
                 const QuotaLimits& limits) {
  const auto over = [](uint64_t used, int64_t add, uint64_t limit) {
    return add > 0 && limit != 0 && static_cast<uint64_t>(add) > room_left(used, limit);
  };
  return over(used_bytes, add_bytes, limits.bytes) || over(used_inodes, add_inodes, limits.inodes) ? EDQUOT : 0;
}

int quota_fallocate(bool keep_size) { return keep_size ? EOPNOTSUPP : 0; }

uint64_t room_left(uint64_t used, uint64_t limit) {
  if (limit == 0) return UINT64_MAX;
  return used < limit ? limit - used : 0;
}

uint64_t writable_within(uint64_t file_size, uint64_t offset, uint64_t size, uint64_t room) {
  // The write may reach file_size + room, no further.
  const uint64_t end = room > UINT64_MAX - file_size ? UINT64_MAX : file_size + room;
  if (offset >= end) return 0;
  return std::min(size, end - offset);
}

}  // namespace portalfs::policy
