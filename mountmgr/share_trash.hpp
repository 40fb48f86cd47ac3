// SPDX-License-Identifier: MIT
#pragma once

// The shares' trashes on disk (policy/trash.hpp): listing, restoring and purging their
// entries, with *at calls from the storage root and never through a symlink, like the rest of
// the storage tree (mountmgr/provision.hpp). The FUSE layer fills them (fuse/trash.cpp).

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "mountmgr/provision.hpp"
#include "policy/trash.hpp"

namespace portalfs::mountmgr {

/// One slot of a share's trash.
struct TrashItem {
  std::string share;
  std::string id;
  /// nullopt when record.json can't be read (a crash while the slot was made, or meddling):
  /// such a slot is listed with `problem` and purged like the others.
  std::optional<policy::TrashRecord> record;
  std::string problem;  // "" or one line: what is wrong with the slot
  int64_t deleted_at = 0;  // the record's time, else the slot's mtime
};

/// The slots of the trashes of `shares`, oldest first. Throws ProvisionError.
std::vector<TrashItem> list_share_trash(const StorageRoot& root, const std::vector<std::string>& shares);

/// Renames `item`'s entry back into its share at `path` (relative to the share's directory),
/// then drops the slot. Refuses (RequestError, code 2), changing nothing, when `path` exists
/// or its directory does not; throws ProvisionError when the disk fails it.
void restore_share_trash(const StorageRoot& root, const TrashItem& item, const std::string& path);

/// Moves each item's slot into the deletion queue (<root>/trash, emptied in the background).
/// Returns how many were moved. Throws ProvisionError.
std::size_t purge_share_trash(const StorageRoot& root, const std::vector<TrashItem>& items);

}  // namespace portalfs::mountmgr
