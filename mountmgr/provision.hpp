// SPDX-License-Identifier: MIT
#pragma once

// Directories below the storage root, made and removed only through *at calls on fds:
//
//   <root>/apps/<app>/<data dir>   (nested names are nested directories: "data/documents")
//   <root>/shared/<share>
//   <root>/storage/<name>          (storage:ensure-directory)
//
// The root is opened once with O_DIRECTORY; each component below it is opened with
// openat(O_PATH|O_NOFOLLOW|O_DIRECTORY) or made with mkdirat. A symlink (or a file) planted
// anywhere on the way makes the call fail with ELOOP/ENOTDIR: it is never followed, so nothing
// is ever created or removed outside the root, whoever owns the directories on the way (an app
// owns its data directory and may plant anything in it).
//
// Directories made on the way are root-owned 0700: only the daemon walks the storage tree. The
// leaf gets its owner, its mode and, for data directories, the read-only marker
// .portalfs-version (the version that created it) before it is opened up, so a directory never
// shows half set up to its app.

#include <sys/types.h>

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/unique_fd.hpp"
#include "policy/grant.hpp"

namespace portalfs::mountmgr {

/// The marker file in each data directory: the version that created it, then "\n".
inline constexpr const char* kVersionMarker = ".portalfs-version";

/// A provisioning failure: one line naming the path and the reason.
class ProvisionError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The storage root, opened once per use.
class StorageRoot {
 public:
  /// Opens the root (creating it and its parents when missing: it is the admin's configured
  /// path, the one path not reached by *at calls). Throws ProvisionError.
  explicit StorageRoot(std::string path);
  [[nodiscard]] int fd() const { return fd_.get(); }
  [[nodiscard]] const std::string& path() const { return path_; }
  /// path() + "/" + components joined by '/'.
  [[nodiscard]] std::string display(const std::vector<std::string>& components) const;

 private:
  std::string path_;
  common::UniqueFd fd_;
};

struct LeafSpec {
  std::optional<policy::Owner> owner;  // disk ids (the container-side ids), stored as is
  mode_t mode = 0755;
  /// Also give an existing leaf `owner` (an explicit share create, storage:ensure-directory);
  /// otherwise an existing directory is left exactly as it is.
  bool chown_existing = false;
  /// Write kVersionMarker with this version in a directory this call creates.
  std::optional<std::string> version_marker;
};

struct Ensured {
  bool created = false;
  /// For an existing directory: the content of its kVersionMarker (without the "\n"), if any.
  std::optional<std::string> marker;
};

/// Makes sure <root>/<components...> is a directory (see the file comment). Idempotent.
/// Throws ProvisionError.
Ensured ensure_dir(const StorageRoot& root, const std::vector<std::string>& components, const LeafSpec& leaf);

/// Deletes <root>/<components...> and everything below it: *at calls only, symlinks removed
/// (never followed), and never into another filesystem mounted below it. Returns false when it
/// did not exist. Throws ProvisionError (what was deleted before the failure stays deleted).
bool remove_tree(const StorageRoot& root, const std::vector<std::string>& components);

/// Whether <root>/<components...> exists as a directory (reached without following symlinks).
bool dir_exists(const StorageRoot& root, const std::vector<std::string>& components);

/// The layout.
std::vector<std::string> app_dir_components(const std::string& app);
std::vector<std::string> data_dir_components(const std::string& app, const std::string& name);
std::vector<std::string> share_dir_components(const std::string& share);
std::vector<std::string> storage_dir_components(const std::string& name);

}  // namespace portalfs::mountmgr
