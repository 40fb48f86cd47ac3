// SPDX-License-Identifier: MIT
#pragma once

// What the state means for the filesystem and for containers: the grants an app is served
// (derived from its record), one policy::ViewSpec per grant, and where each view appears under
// the FUSE mountpoint. Pure functions of the state; no I/O.

#include <string>
#include <vector>

#include "mountmgr/attach.hpp"
#include "mountmgr/state.hpp"
#include "policy/view_spec.hpp"

namespace portalfs::mountmgr {

/// The grants served to an app, parents before children (the order to mount them in):
/// the manifest's grants with `revoked` shares left out and `admin_grants` replacing a
/// manifest grant of the same share, then admin grants of other shares, then one host grant
/// per storage mount.
std::vector<policy::Grant> effective_grants(const AppRecord& app);

/// The host grant a storage mount is served as (kind host, name = host path).
policy::Grant host_grant(const StorageMount& mount);

/// The view of one grant: backing <root>/apps/<app>/<name> | <root>/shared/<share> | the host
/// path; ids from the app's maps, and for a shared grant with an owner a squash (stored as the
/// share's owner, presented as the grant's owner mapped to host ids by the app's maps).
policy::ViewSpec make_view(const State& state, const std::string& storage_root, const std::string& app,
                           const AppRecord& record, const policy::Grant& grant,
                           const std::string& apps_dir = "apps");

/// Every view of every app, apps by name, each app's views in mount order.
/// `apps_dir`: ManagerConfig::apps_dir ("apps", or "app_data" for a Freeshard tree).
policy::ViewSpecs build_views(const State& state, const std::string& storage_root,
                              const std::string& apps_dir = "apps");

/// <mountpoint>/apps/<app>/<data|shared|host>/<view_dir_name(grant)>
std::string view_path(const std::string& mountpoint, const std::string& app, const policy::Grant& grant);

/// The binds that put an app's views into its container, in mount order.
std::vector<Bind> app_binds(const std::string& mountpoint, const std::string& app, const AppRecord& record);

/// The targets of `binds` in the order to detach them: children first (reverse mount order).
std::vector<std::string> detach_targets(const std::vector<Bind>& binds);

}  // namespace portalfs::mountmgr
