// SPDX-License-Identifier: MIT
// app.install / app.upgrade with args.compose, and app.remove of such an app: an app installed
// from a docker-compose.yml.template (policy/compose.hpp).
//
// Each service is recorded as its own app, `<app>--<service>` (policy::service_app_id), with
// storage_app = <app>: its own views, owners and mounts (`portalctl mounts APP --service S`
// asks for `<app>--<service>`), while the data dirs of all services are the compose app's,
// below <storage>/apps/<app>/. The compose app itself has no record: it is the set of records
// whose storage_app names it.
//
// Request args: "manifest" (the template's text), "source" (its name for messages), "compose":
// true, "name" (the app id), "version" (optional, from app_meta.json), "installation_dir" (the
// absolute folder the template came from), "allow_all_app_data", "uid_maps"/"gid_maps" (applied
// to every service), "share_access" (["NAME=read", "*=read-write"]: the operator's access for
// shares, over the template's; kept in the records and used again by an upgrade that gives
// none, [] clears them), "prune" (upgrade; refused for now).

#include <algorithm>

#include "mountmgr/json_reader.hpp"
#include "mountmgr/manager_impl.hpp"
#include "mountmgr/paths.hpp"
#include "mountmgr/views.hpp"
#include "policy/compose.hpp"

namespace portalfs::mountmgr {

bool Manager::Impl::is_compose_app(const std::string& app) const {
  return std::any_of(state.apps.begin(), state.apps.end(),
                     [&](const auto& item) { return item.second->storage_app == app; });
}

namespace {

/// The args of app.install / app.upgrade of a compose app, checked (a bad one is refused,
/// code 2).
struct ComposeArgs {
  std::string app;
  std::string installation_dir;
  std::string version;
  std::optional<std::vector<policy::IdRange>> uid_maps;
  std::optional<std::vector<policy::IdRange>> gid_maps;
  std::string source;
  std::string text;
  bool allow_all_app_data = false;
};

ComposeArgs read_compose_args(const Args& args) {
  if (!args.flag("compose")) args.bad("compose", "expected true");
  if (args.flag("prune")) args.bad("prune", "pruning is not supported for compose apps yet");
  ComposeArgs a;
  a.app = args.str("name");
  if (auto e = policy::check_app_name(a.app)) args.bad("name", *e + ", got " + describe_json(a.app));
  a.installation_dir = args.str("installation_dir");
  try {
    check_host_path(a.installation_dir);
  } catch (const std::invalid_argument& e) {
    args.bad("installation_dir", e.what() + std::string(", got ") + describe_json(a.installation_dir));
  }
  a.version = args.opt_str("version").value_or("");
  a.uid_maps = maps_arg(args, "uid_maps");
  a.gid_maps = maps_arg(args, "gid_maps");
  a.source = args.str("source");
  a.text = args.str("manifest");
  a.allow_all_app_data = args.flag("allow_all_app_data");
  return a;
}

/// What plan_compose() is told: the app, where it lives, and the operator's share rules
/// (a bad rule is refused, code 2).
policy::ComposePlanOptions plan_options(const Args& args, const ComposeArgs& a, const ManagerConfig& config,
                                        const std::vector<std::string>& share_rules) {
  policy::ComposePlanOptions options;
  options.app = a.app;
  options.storage_root = config.storage_root;
  options.apps_dir = config.apps_dir;
  options.installation_dir = a.installation_dir;
  options.allow_all_app_data = a.allow_all_app_data;
  for (const auto& rule : share_rules) {
    if (auto expected = policy::parse_share_access(rule, options.share_access)) {
      args.bad("share_access", *expected + ", got " + describe_json(rule));
    }
  }
  return options;
}

/// Whether the records `wanted` are those of `app` already (installing again is no change).
bool same_records(const State& state, const std::string& app, const std::map<std::string, AppRecord>& wanted) {
  bool same = true;
  for (const auto& [id, rec] : state.apps) {
    if (rec->storage_app != app) continue;
    const auto it = wanted.find(id);
    same = same && it != wanted.end() && it->second.grants == rec->grants && it->second.version == rec->version &&
           it->second.uid_maps == rec->uid_maps && it->second.gid_maps == rec->gid_maps &&
           it->second.share_access == rec->share_access;
  }
  for (const auto& [id, rec] : wanted) same = same && state.apps.contains(id);
  return same;
}

/// Services of `app` the new template no longer has go (their data stays with the app).
void drop_gone_services(State& next, const std::string& app, const std::map<std::string, AppRecord>& wanted) {
  for (auto it = next.apps.begin(); it != next.apps.end();) {
    if (it->second->storage_app == app && !wanted.contains(it->first)) {
      it = next.apps.erase(it);  // its containers lose its views (follow_grants)
    } else {
      ++it;
    }
  }
}

/// Where `pv` is on disk below `app_dir`: a data dir, or the mount point of a grant mounted
/// inside one (make_mount_points); "" for neither.
std::string on_disk(const policy::ServicePlan& plan, const policy::PlannedVolume& pv, const std::string& app_dir) {
  if (pv.grant.kind == policy::GrantKind::data) return app_dir + "/" + pv.grant.name;
  std::string path;
  std::size_t outer_length = 0;
  for (const auto& outer : plan.volumes) {
    const auto& g = outer.grant;
    if (g.kind != policy::GrantKind::data || g.container_path.size() < outer_length ||
        !path_within(pv.grant.container_path, g.container_path)) {
      continue;
    }
    const std::size_t skip = g.container_path == "/" ? 0 : g.container_path.size();
    path = app_dir + "/" + g.name + pv.grant.container_path.substr(skip);
    outer_length = g.container_path.size();
  }
  return path;
}

/// A data dir whose path leads through a symlink (or a file) the app planted: refused as a
/// bad request naming the service and the volume that asked for it (code 2). Returns when no
/// volume of `plan` is on that path.
void refuse_planted(const policy::ServicePlan& plan, const ProvisionError& e, const std::string& source,
                    const std::string& app_dir) {
  const std::string what = e.what();
  const std::string path = what.substr(0, what.find(": "));
  for (const auto& pv : plan.volumes) {
    const std::string at = on_disk(plan, pv, app_dir);
    if (!at.empty() && (at == path || at.starts_with(path + "/"))) {
      refuse(source + ":" + std::to_string(pv.volume->line) + ":" + std::to_string(pv.volume->column) +
             ": service " + plan.service->name + ", volume " + std::to_string(pv.volume->index + 1) + " (\"" +
             pv.volume->text + "\"): " + what);
    }
  }
}

/// The operator's share rules: the ones given, else the ones the app was installed with.
std::vector<std::string> share_rules_of(const State& state, const std::string& app,
                                        const std::optional<std::vector<std::string>>& given) {
  if (given) return *given;
  std::vector<std::string> rules;
  for (const auto& [id, rec] : state.apps) {
    if (rec->storage_app == app) rules = rec->share_access;
  }
  return rules;
}

/// The records the template asks for: one a service, keeping what the operator gave the
/// service's app before (id maps, admin grants, revocations, storage mounts).
std::map<std::string, AppRecord> wanted_records(const State& state, const ComposeArgs& a,
                                                const std::vector<policy::ServicePlan>& plans,
                                                const std::vector<std::string>& share_rules) {
  std::map<std::string, AppRecord> wanted;
  for (const auto& plan : plans) {
    if (const auto it = state.apps.find(plan.app_id); it != state.apps.end() && it->second->storage_app != a.app) {
      refuse("service " + plan.service->name + " of app " + a.app + " would be app " + plan.app_id +
             ", which is installed already");
    }
    AppRecord rec;
    if (const auto it = state.apps.find(plan.app_id); it != state.apps.end()) {
      rec.uid_maps = it->second->uid_maps;
      rec.gid_maps = it->second->gid_maps;
      rec.admin_grants = it->second->admin_grants;
      rec.revoked = it->second->revoked;
      rec.storage_mounts = it->second->storage_mounts;
    }
    if (a.uid_maps) rec.uid_maps = *a.uid_maps;
    if (a.gid_maps) rec.gid_maps = *a.gid_maps;
    rec.version = a.version;
    rec.storage_app = a.app;
    rec.share_access = share_rules;
    for (const auto& pv : plan.volumes) rec.grants.push_back(pv.grant);
    std::stable_sort(rec.grants.begin(), rec.grants.end(), policy::mount_order_less);
    for (const auto& g : rec.grants) {
      if (g.kind == policy::GrantKind::shared) require_share(state, g.name);
    }
    Manager::Impl::check_no_clash(plan.app_id, rec);
    wanted.emplace(plan.app_id, std::move(rec));
  }
  return wanted;
}

}  // namespace

Outcome Manager::Impl::compose_install(const Request& req, bool upgrade) {
  const Args args(req, {"manifest", "source", "compose", "name", "version", "installation_dir",
                        "allow_all_app_data", "uid_maps", "gid_maps", "prune", "share_access"});
  const ComposeArgs a = read_compose_args(args);
  const std::string& app = a.app;
  const std::vector<std::string> share_rules = share_rules_of(state, app, args.opt_str_list("share_access"));

  policy::ComposeApp compose;  // the plans point into it
  std::vector<policy::ServicePlan> plans;
  try {
    compose = policy::parse_compose(a.text, a.source);
    plans = policy::plan_compose(compose, plan_options(args, a, config, share_rules), a.source);
  } catch (const policy::ManifestError& e) {
    refuse(e.what());
  }

  if (state.apps.contains(app)) refuse("app " + app + " is installed from an app.json; remove it first");
  const bool installed = is_compose_app(app);
  if (upgrade && !installed) refuse("app " + app + " is not installed; use app install");
  const std::map<std::string, AppRecord> wanted = wanted_records(state, a, plans, share_rules);
  // Installing again what is installed is no change; anything else is an upgrade.
  if (installed && !upgrade && !same_records(state, app, wanted)) refuse("app " + app + " is installed; use app upgrade");

  State next = state;
  drop_gone_services(next, app, wanted);
  const std::string app_dir = config.storage_root + "/" + config.apps_dir + "/" + app;
  std::string output;
  for (const auto& plan : plans) {
    AppRecord rec = wanted.at(plan.app_id);
    std::vector<DataDirRecord> previous;
    if (const auto it = state.apps.find(plan.app_id); it != state.apps.end()) previous = it->second->data_dirs;
    try {
      provision_app(next, plan.app_id, rec, previous);
    } catch (const ProvisionError& e) {
      refuse_planted(plan, e, a.source, app_dir);
      throw;
    }
    if (!req.json) output += "service " + plan.service->name + " (app " + plan.app_id + "):\n";
    output += mounts_output(plan.app_id, rec, req.json);
    for (const auto* v : plan.not_mediated) {
      if (!req.json && !v->host_source.empty()) {
        output += "  " + v->host_source + " at " + v->target + ": not mediated by portalfs\n";
      }
    }
    next.apps[plan.app_id] = std::move(rec);
  }
  Outcome out{output};
  out.next = std::move(next);
  return out;
}

Outcome Manager::Impl::compose_remove(const Request& req) {
  const Args args(req, {"app", "purge"});
  const std::string app = app_arg(args);
  const bool purge = args.flag("purge");
  Outcome out;
  out.takes_away = true;
  out.after_commit = remove_recorded("deleting the data of app " + app);
  State next = state;
  std::vector<std::string> services;
  for (auto it = next.apps.begin(); it != next.apps.end();) {
    if (it->second->storage_app != app) {
      ++it;
      continue;
    }
    services.push_back(it->first);
    it = next.apps.erase(it);  // its containers lose its views (follow_grants)
  }
  if (purge) next.removals.push_back("apps/" + app);
  out.next = std::move(next);
  std::string list;
  for (const auto& s : services) list += (list.empty() ? "" : ", ") + s;
  if (req.json) {
    out.output = nlohmann::json({{"app", app}, {"purged", purge}, {"services", services}}).dump(2) + "\n";
  } else if (purge) {
    out.output = "removed app " + app + " (" + list + ") and deleted its data\n";
  } else {
    out.output = "removed app " + app + " (" + list + "); its data stays in " + config.storage_root + "/" + config.apps_dir + "/" +
                 app + " (installing it again brings it back; app remove --purge deletes it)\n";
  }
  return out;
}

}  // namespace portalfs::mountmgr
