// SPDX-License-Identifier: MIT
#pragma once

// Id maps: how the ids of the caller (host ids, as the kernel gives them to the daemon) relate
// to the ids stored on disk.
//
// A range map is a list of "inside:outside:count" ranges as in /proc/PID/uid_map: `inside` ids
// are the ones on disk (= what a container sees), `outside` ids are host ids. With
// 0:100000:65536, host uid 101000 is stored as 1000 and disk 1000 is presented as 101000.
// The identity map (no ranges) maps every id to itself.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace portalfs::policy {

/// The id presented for a disk id that no range covers, and refused as a chown target.
inline constexpr uint32_t kOverflowId = 65534;
/// The largest valid id; (uint32_t)-1 means "no change" to chown and is never an id.
inline constexpr uint32_t kMaxId = 4294967294u;

struct IdRange {
  uint32_t inside = 0;
  uint32_t outside = 0;
  uint32_t count = 0;
  friend bool operator==(const IdRange&, const IdRange&) = default;
};

class IdMap {
 public:
  /// The identity map.
  IdMap() = default;

  /// Builds a map; returns nullopt and sets `error` (one phrase, e.g. "ranges 0:100000:65536 and
  /// 1000:200000:10 overlap inside") if a count is 0, a range runs past kMaxId, or two ranges
  /// overlap on either side.
  static std::optional<IdMap> make(std::vector<IdRange> ranges, std::string* error = nullptr);

  /// Parses "inside:outside:count" (one range) and appends it; see make() for the checks.
  static std::optional<IdRange> parse_range(std::string_view text, std::string* error = nullptr);

  [[nodiscard]] bool is_identity() const { return by_inside_.empty(); }
  [[nodiscard]] const std::vector<IdRange>& ranges() const { return by_inside_; }

  /// Host (caller) id -> disk id; nullopt if no range covers it. O(log n).
  [[nodiscard]] std::optional<uint32_t> to_disk(uint32_t host_id) const;
  /// Disk id -> host (presented) id; nullopt if no range covers it. O(log n).
  [[nodiscard]] std::optional<uint32_t> to_host(uint32_t disk_id) const;
  /// to_host(), or kOverflowId when unmapped.
  [[nodiscard]] uint32_t present(uint32_t disk_id) const { return to_host(disk_id).value_or(kOverflowId); }

  /// "0:100000:65536,..." or "identity".
  [[nodiscard]] std::string to_string() const;

  friend bool operator==(const IdMap&, const IdMap&) = default;

 private:
  std::vector<IdRange> by_inside_;   // sorted by inside
  std::vector<IdRange> by_outside_;  // the same ranges sorted by outside
};

/// How one view relates callers' ids to disk ids.
///  - squash unset: uids and gids go through the maps, both directions.
///  - squash set: every new file is stored as `squash->store` and every file is presented as
///    `squash->present` (host ids). chown to anything but the presented owner is refused.
struct Squash {
  uint32_t store_uid = 0, store_gid = 0;      // disk ids new files get
  uint32_t present_uid = 0, present_gid = 0;  // host ids every file shows
  /// Every file shows as writable by all (directories 0777, files rw for all): a read-write
  /// share of an app whose user is unknown, so that any uid the app runs as can write it.
  bool writable_by_all = false;
  friend bool operator==(const Squash&, const Squash&) = default;
};

struct IdPolicy {
  IdMap uids;
  IdMap gids;
  std::optional<Squash> squash;
  friend bool operator==(const IdPolicy&, const IdPolicy&) = default;
};

}  // namespace portalfs::policy
