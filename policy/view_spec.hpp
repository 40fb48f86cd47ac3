// SPDX-License-Identifier: MIT
#pragma once

// What the filesystem serves: one ViewSpec per view. The mount manager builds them from its
// state; the FUSE layer serves them. Plain data, so neither layer depends on the other.

#include <cstdint>
#include <string>
#include <vector>

#include "policy/grant.hpp"
#include "policy/id_map.hpp"
#include "policy/quota.hpp"

namespace portalfs::policy {

/// A limit the daemon enforces itself on a view (policy/quota.hpp; only where the storage root's
/// file system has no project quotas). Every view with the same key shares one count.
struct QuotaSpec {
  std::string key;  // "apps/notes" (all the app's data views), "shared/docs" (every view of the share)
  QuotaLimits limits;
  friend bool operator==(const QuotaSpec&, const QuotaSpec&) = default;
};

struct ViewSpec {
  std::string app;        // app id
  GrantKind kind = GrantKind::data;
  std::string dir_name;   // view_dir_name(grant): served at apps/<app>/<kind>/<dir_name>
  std::string backing;    // absolute host path of the backing directory
  /// The part of `backing` that is trusted as a path string (the storage root the admin
  /// configured; "" = "/"). Below it, the backing directory is reached one component at a
  /// time and never through a symlink (common/beneath.hpp): apps own directories there.
  std::string anchor;
  Access access = Access::read_write;
  std::vector<std::string> sidecars = {};  // a read view's sidecar patterns (Grant::sidecars)
  bool audit_reads = false;                // Grant::audit_reads
  IdPolicy ids;
  /// The backing store is not the file system it must be (a disk not mounted yet, or gone):
  /// the view is listed and answers EIO, and its backing directory is not opened at all.
  bool offline = false;
  /// Changes each time the store is found again (back online, or on another mount of it): a
  /// view with a new epoch opens its backing directory afresh instead of keeping the old fd.
  uint64_t store_epoch = 0;
  /// A shared view of a share with a trash (policy/trash.hpp): the absolute path of the
  /// share's trash directory, below `anchor`; a delete through the view moves the entry there.
  /// "" = deletes delete.
  std::string trash = {};
  /// The limits the daemon accounts this view's changes against (empty: none; then the view's
  /// files may pass through to the kernel): the app's or the share's, and in a shared view
  /// every APP:SHARE limit of the share (fuse/quota_account.hpp says which applies to a file).
  std::vector<QuotaSpec> quotas = {};
  friend bool operator==(const ViewSpec&, const ViewSpec&) = default;
};

using ViewSpecs = std::vector<ViewSpec>;

}  // namespace portalfs::policy
