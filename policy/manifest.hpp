// SPDX-License-Identifier: MIT
#pragma once

// app.json as a platform writes it (Freeshard/Portal schema 0 to 5, plus portalfs' own
// `shared_dirs`): parsed, validated, turned into an AppSpec. Fields that belong to the
// platform (image, port, paths, env_vars, ...) are ignored.

#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "policy/grant.hpp"

namespace portalfs::policy {

/// Why a manifest was refused. what() is the whole one-line message:
///   "FILE:LINE:COL: <parser message>"                          for invalid JSON
///   "FILE: /data_dirs/2/path: expected an absolute path, got \"~/x\""  for a bad field
class ManifestError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct ParseOptions {
  /// Overrides the manifest's `name` (the platform's app id), validated the same way.
  std::string name_override;
};

/// Parses and validates one manifest. `source` names the file in error messages.
/// Throws ManifestError with the one-line message; never returns a partly valid spec.
AppSpec parse_manifest(std::string_view json_text, std::string_view source,
                       const ParseOptions& options = {});

/// Checks of single values, shared with the mount manager and the control protocol.
/// Each returns nullopt when valid, else what was expected ("expected an absolute path"),
/// for the caller to put into its own error with what it got.
std::optional<std::string> check_app_name(std::string_view name);        // [a-z0-9][a-z0-9-]{0,62}
std::optional<std::string> check_share_name(std::string_view name);      // [a-z0-9_][a-z0-9_-]{0,62}
std::optional<std::string> check_container_path(std::string_view path);  // see policy/manifest.cpp
/// Normalises a container path (drops one trailing '/'); call check_container_path() after.
std::string normalise_container_path(std::string_view path);

/// The app id the platform would use for a display name: lowercased, every run of characters
/// outside [a-z0-9-] replaced by '-', trimmed of '-', cut to 63 ("home assistant" ->
/// "home-assistant", "Moodle" -> "moodle"); "" when nothing is left.
std::string app_id_from_name(std::string_view name);

}  // namespace portalfs::policy
