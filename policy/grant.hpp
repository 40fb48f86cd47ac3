// SPDX-License-Identifier: MIT
#pragma once

// The grant model: what an app may see, where, and how.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace portalfs::policy {

/// What a view lets its app do (a grant's mode). Three modes protect what others put in a
/// share, by who created each file (its provenance, policy/provenance.hpp):
///   read         read only (EROFS for every change)
///   read_write   everything
///   create_only  a drop box: create files and directories and write what it creates while it
///                holds it open; it lists only its own entries and can't read, change, rename
///                or delete anything it did not create
///   no_delete    read-write, but deleting, renaming or truncating what it did not create fails
///   own_files    reads everything; changes and deletes only what it created
/// The rules are policy::decide() and policy::decide_made() (policy/access.hpp).
enum class Access { read, read_write, create_only, no_delete, own_files };
/// data: a private directory below <storage>/apps/<app>/; shared: <storage>/shared/<share>/;
/// host: a host directory given by hand (Dokku's storage:mount), served like a share.
enum class GrantKind { data, shared, host };

/// A uid/gid pair in the ids stored on disk (the ids a container sees without a user namespace).
struct Owner {
  uint32_t uid = 0;
  uint32_t gid = 0;
  friend bool operator==(const Owner&, const Owner&) = default;
};

/// One thing an app is given: a private data directory or a shared directory.
struct Grant {
  GrantKind kind = GrantKind::data;
  /// data: the directory below the app's storage dir, relative, '/'-separated ("data/documents");
  /// shared: the share name ("own_media"); host: the absolute host path.
  std::string name;
  /// Where the container sees it: absolute and normalised ("/data/documents").
  std::string container_path;
  Access access = Access::read_write;
  /// data: who owns the provisioned directory (default: root);
  /// shared: present every file as this owner and store new files as the share's owner
  /// (squash). Without it a shared view keeps the real ids (through the app's range map).
  std::optional<Owner> owner;
  /// A read grant's sidecar patterns ("*.xmp"): the app may also create files whose names match
  /// one (next to the originals), and change or remove those it made. Checked by
  /// check_sidecar_pattern(); empty for every other grant.
  std::vector<std::string> sidecars = {};
  /// Whether the app's reads through this view are recorded in its audit trail (an open that
  /// can read, a directory listing), besides what every view records (denials, changes).
  bool audit_reads = false;
  friend bool operator==(const Grant&, const Grant&) = default;
};

/// A validated app: its id, its version and its grants, ordered so that a parent container
/// path always comes before a path below it (the order to mount them in).
struct AppSpec {
  std::string name;  // the app id
  /// The name it was given: the manifest's `name` as written, or the override. Differs from
  /// `name` when the id had to be derived from it ("Home Assistant" -> "home-assistant"), and
  /// tells apart two names that derive the same id ("a/b" and "a b").
  std::string given_name;
  std::string version;  // "" when the manifest has none
  std::vector<Grant> grants;
};

/// Parent container paths before the paths below them, then by name: a byte compare in which
/// '/' sorts first ("/data" < "/data/x" < "/data-old"). The order AppSpec keeps its grants in
/// and the order to mount them in.
bool mount_order_less(const Grant& a, const Grant& b);

/// The name of a view directory below apps/<app>/data/ or apps/<app>/shared/: the grant's
/// name with '%' written "%25" and '/' written "%2F" (so "data/documents" -> "data%2Fdocuments"),
/// which keeps nested data directories distinct and the mapping reversible.
std::string view_dir_name(const Grant& grant);

/// "read" | "read-write" | "create-only" | "no-delete" | "own-files"
const char* to_string(Access access);
const char* to_string(GrantKind kind);  // "data" | "shared" | "host"
/// How a mount shows it, for one-line summaries: "ro", "rw", or "rw (no-delete)".
std::string short_text(Access access);
/// Whether the container gets the grant as a read-only mount: a read grant without sidecars.
bool mounted_read_only(const Grant& grant);
/// nullopt if `pattern` is a valid sidecar pattern (an fnmatch(3) pattern for one file name: not
/// empty, at most 255 bytes, no '/', no NUL, not "." or ".."), else what is expected.
std::optional<std::string> check_sidecar_pattern(std::string_view pattern);
/// Whether the file name `name` matches one of the sidecar `patterns`.
bool is_sidecar(const std::vector<std::string>& patterns, std::string_view name);
/// Parses a mode's name; with `shorthands` (the command line) also "ro" and "rw". nullopt
/// otherwise.
std::optional<Access> parse_access(std::string_view text, bool shorthands = true);
/// The names parse_access() takes, for error messages: "read, read-write, create-only, ...".
std::string access_names();
/// Whether the view may change anything (every mode but read): it is mounted read-write.
bool writes(Access access);
/// Whether the view's rules depend on who created each file (create-only, no-delete,
/// own-files).
bool protects(Access access);
/// Whether changing a grant from `from` to `to` takes away something `from` allowed (then it
/// must apply even when the change can't be saved).
bool narrower(Access to, Access from);

}  // namespace portalfs::policy
