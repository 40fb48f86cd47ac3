// SPDX-License-Identifier: MIT
#pragma once

// Reaching a directory below a trusted one without trusting anything on the way.
//
// Everything portalfs opens from recorded state or from a manifest (a view's backing
// directory, a data directory to make, a tree to delete) lies below the storage root, where
// apps own directories and may plant symlinks. A path string opened with O_NOFOLLOW guards its
// last component only: a symlink in the middle ("data/x" -> "../../beta") is followed. So
// every such path is walked one component at a time from the root's fd, each component
// opened with O_NOFOLLOW|O_DIRECTORY: a symlink (or a file) anywhere on the way fails the walk
// and is named, never followed.

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "common/unique_fd.hpp"

namespace portalfs::common {

/// Why a walk stopped: the component (index into the components) and the errno. ENOTDIR
/// means it is not a directory; is_symlink says whether it is a symbolic link.
struct WalkFailure {
  std::size_t component = 0;
  int err = 0;
  bool is_symlink = false;
};

/// Whether `c` may be one component of a walk: not empty, not "." or "..", no '/' or NUL.
bool valid_component(std::string_view c);

/// Opens components[0..n) below `dir_fd`, one at a time, never following a symlink: each
/// component but the last as O_PATH, the last with `last_flags` | O_DIRECTORY | O_NOFOLLOW |
/// O_CLOEXEC. No components: `dir_fd` itself is reopened with those flags. Fails with EINVAL
/// for an invalid component; `failure` (if given) says where it stopped.
Result<UniqueFd> open_beneath(int dir_fd, const std::vector<std::string>& components, int last_flags,
                              WalkFailure* failure = nullptr);

/// "a/b/c" -> {"a", "b", "c"} ("" -> {}); the components are not checked.
std::vector<std::string> split_components(std::string_view relative);

/// One line for a failed walk: "<base>/<components up to the failed one>: is a symbolic link;
/// refusing to follow it" (or "is not a directory", or the errno's text).
std::string describe_walk_failure(std::string_view base, const std::vector<std::string>& components,
                                  const WalkFailure& failure);

}  // namespace portalfs::common
