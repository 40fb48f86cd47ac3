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

/// What a quota limits: an app's data directories, a share, or what one app created in a
/// share (app_share: counted by the daemon only, by the files' provenance, policy/provenance.hpp;
/// a project quota counts each file for one project, the share's).
enum class QuotaKind { app, share, app_share };

struct QuotaTarget {
  QuotaKind kind = QuotaKind::app;
  std::string name;  // the app id or the share name
  std::string app = {};  // app_share: the app id (`name` is the share)
  /// The key in the state and in `usage`: "apps/notes", "shared/docs" (the folder below the
  /// storage root that holds it, in the portalfs layout), "notes:docs" (app_share, as typed).
  [[nodiscard]] std::string key() const;
  friend auto operator<=>(const QuotaTarget&, const QuotaTarget&) = default;
};

/// Parses a state key ("apps/notes", "shared/docs", "notes:docs"); nullopt for anything else.
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

// ---- Accounting by the daemon (where the backing file system has no project quotas) ----
//
// What counts: the size (st_size) of each regular file, once per inode however many names it
// has, and one inode per file, directory, symlink or other entry below the target's backing
// directories (not the directories themselves). Sizes, not allocated blocks: a write's cost is
// known before it is made, so a write is cut exactly at the limit; a sparse file counts its
// full size (the app could fill it without a new request to the daemon's accounting).

/// A limit in bytes and in inodes; 0 = none.
struct QuotaLimits {
  uint64_t bytes = 0;
  uint64_t inodes = 0;
  friend bool operator==(const QuotaLimits&, const QuotaLimits&) = default;
};

/// 0 when `used` plus `add` stays within `limits`, else EDQUOT. A zero or negative `add`
/// (freeing) is always admitted, even over the limit (a limit lowered below the usage must
/// still let the app delete).
int quota_admits(uint64_t used_bytes, uint64_t used_inodes, int64_t add_bytes, int64_t add_inodes,
                 const QuotaLimits& limits);

/// Whether a fallocate may be made in a view with a limit the daemon accounts: 0, or
/// EOPNOTSUPP for one that keeps the size (FALLOC_FL_KEEP_SIZE, so also a hole punched): it
/// would take room beyond the end of the file, which sizes do not count. posix_fallocate
/// then writes zeros instead, which are counted.
int quota_fallocate(bool keep_size);

/// What is left below `limit` (0 = none: UINT64_MAX) once `used` is taken.
uint64_t room_left(uint64_t used, uint64_t limit);

/// The bytes a write of `size` at `offset` may put into a file of `file_size` when the target
/// has `room` bytes left before its limit: `size` when the write fits, fewer (a short write
/// that ends exactly at the limit), or 0 (the write fails with EDQUOT). Rewriting bytes below
/// the end of the file costs nothing.
uint64_t writable_within(uint64_t file_size, uint64_t offset, uint64_t size, uint64_t room);

}  // namespace portalfs::policy
