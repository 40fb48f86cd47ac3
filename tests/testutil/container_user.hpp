// SPDX-License-Identifier: MIT
#pragma once

// Acting as an app's user the way a container does: through bind mounts of the view roots.
// On the host, portalfsd's directories above the views are root's alone (issue #15), so a
// test that drops to an app's uid can't reach a view by its host path.

#include <sys/types.h>

#include <functional>
#include <string>

namespace portalfs::testutil {

/// Runs `fn` in a child as uid/gid (no supplementary groups), in a mount namespace of its own
/// in which every view below `mountpoint` (apps/<app>/<kind>/<view>) is a bind mount of that
/// view's root at its usual path, over a tmpfs hiding the rest of the mount: the paths the
/// test uses keep working, and reach the views as a container's bind mounts do, without going
/// through the root-only directories above them. Returns what fn returns (an errno, 0 = ok), or
/// 240-249 when the namespace could not be set up, 128 + signal when the child died.
int as_container_user(const std::string& mountpoint, uid_t uid, gid_t gid, const std::function<int()>& fn);

}  // namespace portalfs::testutil
