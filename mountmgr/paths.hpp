// SPDX-License-Identifier: MIT
#pragma once

// Small path helpers shared by the state reader, provisioning and the verbs. They work on
// strings only; nothing here touches the filesystem.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace portalfs::mountmgr {

/// "a/b/c" -> {"a", "b", "c"}; empty segments are kept (so the checks below can see them).
std::vector<std::string> split_path(std::string_view relative);

/// A data directory name: relative, '/'-separated, no empty, "." or ".." segment, no NUL.
/// Throws std::invalid_argument: what was expected.
void check_data_dir_name(std::string_view name);

/// A host directory for storage:mount: absolute, no "." or ".." segment, no NUL, no ':' (the
/// docker -v separator). Throws std::invalid_argument: what was expected.
void check_host_path(std::string_view path);

/// Collapses repeated '/' and drops a trailing '/' ("/srv//x/" -> "/srv/x"); "/" stays "/".
std::string normalise_host_path(std::string_view path);

/// An absolute path with "." and empty segments dropped and each ".." taking the segment before
/// it away (never above "/"), as a string only: "/a/./b/../c//" -> "/a/c", "/.." -> "/". Nothing
/// is resolved on disk, so the result is where the path leads if none of its segments is a
/// symlink. `path` must start with '/'.
std::string normalise_lexically(std::string_view path);

/// Whether `path` is `base` or below it, segment-wise ("/a/b" is within "/a", "/ab" is not).
/// Both must be normalised.
bool path_within(std::string_view path, std::string_view base);

/// Dokku's storage mount spec "HOST:CTR[:ro|:rw]" split at ':', its paths not yet checked.
struct StorageSpec {
  std::string host;
  std::string container;
  bool read_only = false;
};

/// The spec's parts, or nullopt unless it has two or three parts and a third is "ro" or "rw".
/// The one grammar of the spec: portalctl checks with it before sending, the daemon parses it.
std::optional<StorageSpec> split_storage_spec(std::string_view spec);

}  // namespace portalfs::mountmgr
