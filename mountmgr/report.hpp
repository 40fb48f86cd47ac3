// SPDX-License-Identifier: MIT
#pragma once

// Dokku-compatible storage output, so scripts written for `dokku storage:*` keep working:
//
//   storage:list   text: one "HOST:CTR" or "HOST:CTR:ro" per line (what `dokku --quiet
//                  storage:list` prints); json: [{"host_path", "container_path", "volume_options"}]
//   storage:report text: Dokku's layout,
//                    =====> APP storage information
//                           Storage build mounts:
//                           Storage deploy mounts:         -v HOST:CTR -v ...
//                           Storage run mounts:            -v HOST:CTR -v ...
//                  or with one --storage-PHASE-mounts flag only that value;
//                  json: [{"app", "storage_build_mounts": [..], "storage_deploy_mounts": [..],
//                          "storage_run_mounts": [..]}] each a list of "-v ..." flags.
//   storage:ensure-directory  Dokku's "-----> Ensuring PATH exists" lines.
//
// An app's hand-made storage mounts show their host path as the admin gave it (so
// storage:unmount takes back exactly what storage:list printed); its other grants show the view
// path under the mountpoint. portalfs has no build phase: build mounts are always empty.

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "policy/grant.hpp"

namespace portalfs::mountmgr {

struct StorageEntry {
  std::string host_path;
  std::string container_path;
  bool read_only = false;
};

std::string render_storage_list(const std::vector<StorageEntry>& entries, bool json);

enum class Phase { build, deploy, run };
/// "build" | "deploy" | "run"
std::optional<Phase> parse_phase(std::string_view text);

/// One block per app, in the given order; `only` prints just that phase's value per app.
std::string render_storage_report(const std::vector<std::pair<std::string, std::vector<StorageEntry>>>& apps,
                                  std::optional<Phase> only, bool json);

/// Dokku's --chown presets: herokuish 32767:32767 (the default), heroku 1000:1000, packeto
/// 2000:2000, false = leave the owner alone.
struct ChownPreset {
  bool chown = true;
  policy::Owner owner;
  friend bool operator==(const ChownPreset&, const ChownPreset&) = default;
};
/// nullopt for an unknown preset name.
std::optional<ChownPreset> parse_chown_preset(std::string_view text);

/// A storage directory name: 1 to 64 of [A-Za-z0-9._-], starting with a letter or digit.
/// Throws std::invalid_argument: what was expected.
void check_storage_dir_name(std::string_view name);

std::string render_ensure_directory(const std::string& path, const std::optional<policy::Owner>& owner, bool json);

}  // namespace portalfs::mountmgr
