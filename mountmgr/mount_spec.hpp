// SPDX-License-Identifier: MIT
#pragma once

// Mount specs for the runtime that starts an app's container, one entry per view, parents
// first (a bind below another must be mounted after it):
//
//   docker  "-v HOST:CTR" or "-v HOST:CTR:ro", one per line
//   oci     a JSON array for config.json's "mounts":
//           {"destination", "type": "bind", "source", "options": ["rbind","nosuid","nodev","ro"|"rw"]}
//           (nosuid,nodev spelled out: runc's read-only remount drops them otherwise)
//   json    [{"app", "kind", "name", "host_path", "container_path", "access"}]
//
// HOST is the view's path under the FUSE mountpoint (mountmgr/views.hpp), never the backing
// directory: the container sees what the filesystem serves.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "policy/grant.hpp"

namespace portalfs::mountmgr {

enum class MountStyle { docker, oci, json };

/// "docker" | "oci" | "json"
std::optional<MountStyle> parse_mount_style(std::string_view text);

struct MountEntry {
  std::string app;
  policy::Grant grant;
  std::string host_path;  // the view path under the mountpoint
};

/// An app's mount entries, in the given (mount) order.
std::vector<MountEntry> mount_entries(const std::string& mountpoint, const std::string& app,
                                      const std::vector<policy::Grant>& grants);

/// Renders entries in one style. docker throws std::invalid_argument for a path holding ':'
/// (which -v can't express).
std::string render_mounts(const std::vector<MountEntry>& entries, MountStyle style);

}  // namespace portalfs::mountmgr
