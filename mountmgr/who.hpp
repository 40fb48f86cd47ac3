// SPDX-License-Identifier: MIT
#pragma once

// `portalctl who PATH`: which app created a file and which last changed it (the provenance the
// filesystem records on the backing file, policy/provenance.hpp).
//
// PATH is a file as someone sees it: in a view below the mountpoint
// (<mountpoint>/apps/<app>/<data|shared|host>/<view dir>/...) or on the host below the storage
// root (<root>/shared/<share>/..., <root>/apps/<app>/<dir>/...). locate_backing() maps it to the
// backing file from the state alone, as the views are built (mountmgr/views.hpp); read_provenance()
// then reaches that file from the storage root (or from "/" for a host view) one component at a
// time, never following a symlink (common/beneath.hpp): apps own the directories on the way and
// may plant links there. The last component is not followed either: a symlink's own provenance
// is what is read.
//
// Errors: std::invalid_argument for bad input (not absolute, not below the mountpoint or the
// storage root, a directory above the views); std::runtime_error for what is not there (no such
// view, no such file, a symlink on the way). Both carry one line that names the path.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mountmgr/manager.hpp"
#include "mountmgr/state.hpp"

namespace portalfs::mountmgr {

/// A file as the daemon reaches it: from `anchor` (the storage root as configured, or "/" for
/// the host path of a storage mount), through `components`, none of them followed if a symlink.
struct BackingFile {
  std::string anchor;
  std::vector<std::string> components;  // valid components (common::valid_component); may be empty
  /// anchor + "/" + components joined by '/'.
  [[nodiscard]] std::string path() const;
  friend bool operator==(const BackingFile&, const BackingFile&) = default;
};

/// The backing file of `path`, an absolute path below config.mountpoint (in a view) or below
/// config.storage_root. `path` is normalised lexically first ('//' and "." dropped, ".." takes
/// the previous component away, never above "/"), so a ".." can't lead out of a view or the
/// root unseen: the result is judged by where the normalised path lies. Pure: no I/O.
/// Throws std::invalid_argument (bad input) or std::runtime_error (no such view); see above.
BackingFile locate_backing(const State& state, const ManagerConfig& config, std::string_view path);

/// What is recorded on a backing file.
struct Provenance {
  std::string type;  // "file", "directory", "symlink" or "other"
  // The values as stored; nullopt when absent or empty (an empty id names no app).
  std::optional<std::string> created_by;  // policy::kCreatedByXattr; nullopt: no app recorded
  std::optional<std::string> changed_by;  // policy::kChangedByXattr; nullopt: none but the creator
};

/// lstat()s `file` and reads its two provenance xattrs (lgetxattr on the last component, its
/// parent reached as described above). `shown_as` names the file in messages (the path as
/// asked). Throws std::runtime_error: "SHOWN_AS: no such file or directory (backing B)", "...:
/// is a symbolic link; refusing to follow it", or another errno's text.
Provenance read_provenance(const BackingFile& file, const std::string& shown_as);

/// A view that shows a file: the file's path in it.
struct ShownIn {
  std::string app;
  std::string path;    // <mountpoint>/apps/<app>/<kind>/<view dir>/<the rest>
  std::string access;  // policy::to_string(grant access)
  friend bool operator==(const ShownIn&, const ShownIn&) = default;
};

/// Every view served now (the effective grants of every app) whose backing directory holds
/// `file` or is it, apps by name, each app's views in mount order. Pure.
std::vector<ShownIn> views_showing(const State& state, const ManagerConfig& config, const BackingFile& file);

/// "PATH: created by A, last changed by B", the text answer of `who` (one line, with "\n";
/// app ids escaped for a terminal).
std::string who_line(const std::string& path, const Provenance& provenance);

}  // namespace portalfs::mountmgr
