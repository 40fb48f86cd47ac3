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
// Directories made on the way are root-owned 0700: only the daemon walks the storage tree. A
// new leaf is made under a temporary name (.portalfs-new-*), given its owner, its mode and, for
// data directories, the read-only marker .portalfs-version (the version that created it, then
// "\n"), and only then renamed into place: a directory at its real name is complete, or it was
// not made by this code. An existing data directory without a complete, valid marker (a crash
// of an older version, or its app meddled) is finished again, never trusted as it is.
//
// Deleting (purge, prune) is two steps. move_to_trash() renames the tree into <root>/trash at
// once (atomic: it is gone from its place, and a new directory of the same name starts empty).
// empty_trash() then deletes what is in the trash, in constant stack and a few fds whatever the
// depth: a subdirectory that is not empty is moved up to the trash's top level and dealt with
// later, so no walk ever goes more than one level down. The trash is its own to-do list: what
// a crash interrupts is finished by the next empty_trash().

#include <sys/types.h>

#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
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
  /// Opens the root (creating it and its parents when missing and `create`: it is the admin's
  /// configured path, the one path not reached by *at calls). Throws ProvisionError.
  explicit StorageRoot(std::string path, bool create = true);
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
  /// An existing directory without a marker is taken as it is (a tree another platform made,
  /// such as Freeshard's app_data/<app>/...): no owner, mode or marker is given to it. One
  /// with a bad marker is still refinished.
  bool adopt_unmarked = false;
  /// Make a new leaf a btrfs subvolume when the storage root is btrfs (an app's data root, a
  /// share): a qgroup then limits it with passthrough kept (mountmgr/quota.hpp).
  bool subvolume = false;
};

struct Ensured {
  bool created = false;
  /// An existing data directory whose marker was missing, incomplete or invalid: it was given
  /// its owner, mode and a new marker (`repair` says what was wrong, one line naming the file).
  std::optional<std::string> repair;
  /// For an existing directory with a valid marker: the version in it.
  std::optional<std::string> marker;
  /// For an existing directory: its owner as found (before any chown_existing).
  std::optional<policy::Owner> existing_owner;
};

/// Makes sure <root>/<components...> is a directory (see the file comment). Idempotent.
/// Throws ProvisionError.
Ensured ensure_dir(const StorageRoot& root, const std::vector<std::string>& components, const LeafSpec& leaf);

/// Renames <root>/<components...> (anything: a directory tree, a file, a symlink itself) into
/// <root>/trash. Returns false when it did not exist. Throws ProvisionError (a symlink on the
/// way, or another file system mounted there).
bool move_to_trash(const StorageRoot& root, const std::vector<std::string>& components);

struct TrashReport {
  std::size_t deleted = 0;  // entries deleted (files, links, directories)
  std::size_t left = 0;     // top-level trash entries that could not be deleted
  std::string problem;      // the first reason something was left, one line
};

/// Deletes what is in <root>/trash (see the file comment): *at calls only, symlinks removed
/// (never followed), nothing on another file system mounted below. Stops early, leaving the
/// rest for the next call, once `keep_going` returns false (checked between entries).
TrashReport empty_trash(const StorageRoot& root, const std::function<bool()>& keep_going = {});

/// Whether <root>/trash holds anything.
bool trash_pending(const StorageRoot& root);

/// Whether <root>/<components...> exists as a directory (reached without following symlinks).
bool dir_exists(const StorageRoot& root, const std::vector<std::string>& components);

/// The layout.
std::vector<std::string> app_dir_components(const std::string& app, const std::string& apps_dir = "apps");
std::vector<std::string> data_dir_components(const std::string& app, const std::string& name,
                                             const std::string& apps_dir = "apps");
std::vector<std::string> share_dir_components(const std::string& share);
std::vector<std::string> storage_dir_components(const std::string& name);
std::vector<std::string> trash_components();
/// share-trash/<share>: a share's trash (policy/trash.hpp), not the deletion queue above.
std::vector<std::string> share_trash_components(const std::string& share);

/// Whether `text` may be shown as a version: valid UTF-8 without control characters.
bool displayable_version(std::string_view text);

}  // namespace portalfs::mountmgr
