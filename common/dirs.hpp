// SPDX-License-Identifier: MIT
#pragma once

// Creating the daemon's own directories (state dir, storage root, /run/portalfs) private.

#include <sys/types.h>

#include <string>

namespace portalfs::common {

/// mkdir -p `path`. Each directory it creates gets `mode` whatever the umask and, unless `gid`
/// is -1, group `gid`; directories that exist are left as the operator made them. Returns ""
/// or one line naming the directory that could not be made and why.
std::string make_dirs(const std::string& path, mode_t mode, gid_t gid = static_cast<gid_t>(-1));

}  // namespace portalfs::common
