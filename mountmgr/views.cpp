// SPDX-License-Identifier: MIT
#include "mountmgr/views.hpp"

#include <algorithm>
#include <stdexcept>

#include "policy/quota.hpp"
#include "policy/trash.hpp"

namespace portalfs::mountmgr {
namespace {

policy::IdMap make_map(const std::vector<policy::IdRange>& ranges) {
  // The ranges were checked when they entered the state (install, or state.json's reader).
  std::string error;
  auto map = policy::IdMap::make(ranges, &error);
  if (!map) throw std::logic_error("invalid id map in the state: " + error);
  return *map;
}

// The owner of the app's first data directory that names one.
std::optional<policy::Owner> known_user(const AppRecord& record) {
  for (const auto& g : record.grants) {
    if (g.kind == policy::GrantKind::data && g.owner) return g.owner;
  }
  return std::nullopt;
}

bool is_share(const policy::Grant& g, const std::string& share) {
  return g.kind == policy::GrantKind::shared && g.name == share;
}

// The limit portalfsd accounts itself for a view (QuotaRecord::by_daemon), if any: an app's
// covers its data views (a compose app's services share their storage app's), a share's every
// view of it. Limits the kernel enforces need nothing from the views.
std::optional<policy::QuotaSpec> daemon_quota(const State& state, const std::string& app, const AppRecord& record,
                                              const policy::Grant& grant) {
  std::string key;
  if (grant.kind == policy::GrantKind::data) {
    key = policy::QuotaTarget{policy::QuotaKind::app, record.storage_app.empty() ? app : record.storage_app}.key();
  } else if (grant.kind == policy::GrantKind::shared) {
    key = policy::QuotaTarget{policy::QuotaKind::share, grant.name}.key();
  } else {
    return std::nullopt;
  }
  const auto it = state.quotas.find(key);
  if (it == state.quotas.end() || !it->second.by_daemon || (!it->second.bytes && !it->second.inodes)) return std::nullopt;
  return policy::QuotaSpec{key, {it->second.bytes, it->second.inodes}};
}

}  // namespace

policy::Grant host_grant(const StorageMount& mount) {
  return {policy::GrantKind::host, mount.host_path, mount.container_path,
          mount.read_only ? policy::Access::read : policy::Access::read_write, std::nullopt};
}

std::vector<policy::Grant> effective_grants(const AppRecord& app) {
  std::vector<policy::Grant> out;
  for (const auto& g : app.grants) {
    if (g.kind != policy::GrantKind::shared) {
      out.push_back(g);
      continue;
    }
    if (std::find(app.revoked.begin(), app.revoked.end(), g.name) != app.revoked.end()) continue;
    auto admin = std::find_if(app.admin_grants.begin(), app.admin_grants.end(),
                              [&](const policy::Grant& a) { return is_share(a, g.name); });
    out.push_back(admin != app.admin_grants.end() ? *admin : g);
  }
  for (const auto& a : app.admin_grants) {
    const bool in_manifest = std::any_of(app.grants.begin(), app.grants.end(),
                                         [&](const policy::Grant& g) { return is_share(g, a.name); });
    if (!in_manifest) out.push_back(a);
  }
  for (const auto& m : app.storage_mounts) out.push_back(host_grant(m));
  std::stable_sort(out.begin(), out.end(), policy::mount_order_less);
  return out;
}

policy::ViewSpec make_view(const State& state, const std::string& storage_root, const std::string& app,
                           const AppRecord& record, const policy::Grant& grant, const std::string& apps_dir) {
  policy::ViewSpec view;
  view.app = app;
  view.kind = grant.kind;
  view.dir_name = policy::view_dir_name(grant);
  view.access = grant.access;
  view.sidecars = grant.sidecars;
  view.audit_reads = grant.audit_reads;
  view.ids.uids = make_map(record.uid_maps);
  view.ids.gids = make_map(record.gid_maps);
  switch (grant.kind) {
    case policy::GrantKind::data:
      // A data grant's owner is only the provisioned directory's owner: never a squash, but
      // for a service of a compose app, whose data dirs several services with their own ids
      // share: each service's view presents and stores its own files as its own user.
      view.backing = storage_root + "/" + apps_dir + "/" + (record.storage_app.empty() ? app : record.storage_app) + "/" + grant.name;
      view.anchor = storage_root;
      if (!record.storage_app.empty() && grant.owner) {
        view.ids.squash = policy::Squash{grant.owner->uid, grant.owner->gid, view.ids.uids.present(grant.owner->uid),
                                         view.ids.gids.present(grant.owner->gid)};
      }
      break;
    case policy::GrantKind::shared: {
      view.backing = storage_root + "/shared/" + grant.name;
      view.anchor = storage_root;
      // A grant that writes means the app can write, whatever uid it runs as (#11). Without an
      // owner in the grant, a read-write share is presented as the app's known user: the
      // owner of its first data directory that names one (app.json's uid/gid; a compose
      // service's user: or PUID/PGID, which compose grants carry themselves).
      std::optional<policy::Owner> who = grant.owner;
      if (!who && policy::writes(grant.access)) who = known_user(record);
      if (state.share_trash.contains(grant.name)) {
        view.trash = storage_root + "/" + policy::kShareTrashDir + "/" + grant.name;
      }
      const auto share = state.shares.find(grant.name);
      const policy::Owner store = share != state.shares.end() ? share->second : policy::Owner{};
      if (who) {
        view.ids.squash = policy::Squash{store.uid, store.gid, view.ids.uids.present(who->uid),
                                         view.ids.gids.present(who->gid)};
      } else if (policy::writes(grant.access)) {
        // Nobody says who the app runs as (no owner in the grant, no data dir with one, a
        // compose service without user:/PUID): whatever uid it runs as must be able to write
        // a read-write share, root-owned or not. Stored as the share's owner, shown as the
        // container's root, writable by all.
        view.ids.squash = policy::Squash{store.uid, store.gid, view.ids.uids.present(0), view.ids.gids.present(0),
                                         /*writable_by_all=*/true};
      }
      break;
    }
    case policy::GrantKind::host:
      // The admin's path, walked from "/" like the rest: no symlink on the way either.
      view.backing = grant.name;
      break;
  }
  if (auto quota = daemon_quota(state, app, record, grant)) view.quotas.push_back(*quota);
  // Every app's limit within this share, not only this app's: a file counts for the app that
  // created it, whichever app's view changes it (fuse/quota_account.hpp).
  if (grant.kind == policy::GrantKind::shared) {
    for (const auto& [key, q] : state.quotas) {
      const auto target = policy::parse_quota_key(key);
      if (!target || target->kind != policy::QuotaKind::app_share || target->name != grant.name) continue;
      if (q.bytes || q.inodes) view.quotas.push_back(policy::QuotaSpec{key, {q.bytes, q.inodes}});
    }
  }
  return view;
}

policy::ViewSpecs build_views(const State& state, const std::string& storage_root, const std::string& apps_dir) {
  policy::ViewSpecs views;
  for (const auto& [name, record] : state.apps) {
    for (const auto& grant : effective_grants(record)) {
      views.push_back(make_view(state, storage_root, name, record, grant, apps_dir));
    }
  }
  return views;
}

std::string view_path(const std::string& mountpoint, const std::string& app, const policy::Grant& grant) {
  return mountpoint + "/apps/" + app + "/" + policy::to_string(grant.kind) + "/" + policy::view_dir_name(grant);
}

std::vector<Bind> app_binds(const std::string& mountpoint, const std::string& app, const AppRecord& record) {
  std::vector<Bind> binds;
  for (const auto& grant : effective_grants(record)) {
    binds.push_back({view_path(mountpoint, app, grant), grant.container_path, policy::mounted_read_only(grant)});
  }
  return binds;
}

std::vector<std::string> detach_targets(const std::vector<Bind>& binds) {
  std::vector<std::string> targets;
  for (auto it = binds.rbegin(); it != binds.rend(); ++it) targets.push_back(it->target);
  return targets;
}

}  // namespace portalfs::mountmgr
