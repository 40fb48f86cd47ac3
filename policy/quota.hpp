// SPDX-License-Identifier: MIT
#pragma once

// Quotas (issue #16): a limit in bytes and in inodes per app (all its data directories
// together) or per share, enforced by the backing file system's project quotas. Each limited
// app or share gets a project id of its own, recorded in the state and set on its backing
// directories (mountmgr/quota.hpp does the I/O). This file holds the rules both portalctl and
// the daemon apply: sizes, targets, project ids and the warning levels. No I/O here.

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>

namespace portalfs::policy {

/// "10G", "500M", "64K", "1T" (powers of 1024, an optional trailing "B" or "iB"), or a plain
/// number of bytes ("1048576"); at least 1, at most 2^60. nullopt for anything else, and
/// `expected` (if given) says what was expected, for the one-line error.
std::optional<uint64_t> parse_size(std::string_view text, std::string* expected = nullptr);
/// The shortest exact form: 10737418240 -> "10G", 1500 -> "1500".
std::string format_size(uint64_t bytes);

/// What a quota limits: an app's data directories or a share.
enum class QuotaKind { app, share };

struct QuotaTarget {
  QuotaKind kind = QuotaKind::app;
  std::string name;  // the app id or the share name
  /// The key in the state and in `usage`: "apps/notes", "shared/docs" (the folder below the
  /// storage root that holds it, in the portalfs layout).
  [[nodiscard]] std::string key() const;
  friend auto operator<=>(const QuotaTarget&, const QuotaTarget&) = default;
};

/// Parses a state key ("apps/notes", "shared/docs"); nullopt for anything else.
std::optional<QuotaTarget> parse_quota_key(std::string_view key);

/// The project ids portalfs gives out: from kFirstProjectId up, the lowest one no recorded
/// target holds. Ids below are left to the host (0 is every file's default).
inline constexpr uint32_t kFirstProjectId = 100000;
inline constexpr uint32_t kLastProjectId = 0x7fffffff;
/// The lowest id from kFirstProjectId up that is not in `taken`; nullopt when none is left.
std::optional<uint32_t> next_project_id(const std::set<uint32_t>& taken);

/// Usage relative to a limit, in whole percent (rounded down); 0 without a limit.
int percent_of(uint64_t used, uint64_t limit);

/// The warning level a usage is at: 0 (below 90 %), 90 or 100 (at or above the limit). The
/// larger of the bytes' and the inodes' levels, each against its own limit (0 = none).
int warning_level(uint64_t bytes, uint64_t byte_limit, uint64_t inodes, uint64_t inode_limit);

}  // namespace portalfs::policy
