// SPDX-License-Identifier: MIT
// app.install, app.upgrade, app.remove, app.list, app.show.

#include <algorithm>

#include "common/escape.hpp"
#include "common/log.hpp"
#include "mountmgr/manager_impl.hpp"
#include "mountmgr/paths.hpp"
#include "mountmgr/views.hpp"

namespace portalfs::mountmgr {

// uid_maps / gid_maps: each "C:H:N", together a valid IdMap.
std::optional<std::vector<policy::IdRange>> maps_arg(const Args& args, std::string_view key) {
  auto texts = args.opt_str_list(key);
  if (!texts) return std::nullopt;
  std::vector<policy::IdRange> ranges;
  for (std::size_t i = 0; i < texts->size(); ++i) {
    std::string error;
    auto range = policy::IdMap::parse_range((*texts)[i], &error);
    if (!range) {
      args.bad(std::string(key) + "/" + std::to_string(i),
               "expected \"inside:outside:count\" (" + error + "), got " + describe_json((*texts)[i]));
    }
    ranges.push_back(*range);
  }
  std::string error;
  if (!policy::IdMap::make(ranges, &error)) args.bad(key, error);
  return ranges;
}

namespace {

// ", sidecars *.xmp *.nfo" for a read grant with sidecars, else "".
std::string sidecars_text(const policy::Grant& g) {
  std::string out;
  for (const auto& p : g.sidecars) out += (out.empty() ? ", sidecars " : " ") + p;
  return out;
}

struct ManifestArgs {
  policy::AppSpec spec;
  std::optional<std::vector<policy::IdRange>> uid_maps;
  std::optional<std::vector<policy::IdRange>> gid_maps;
};

ManifestArgs manifest_args(const Args& args) {
  ManifestArgs out;
  const std::string manifest = args.str("manifest");
  const std::string source = args.str("source");
  policy::ParseOptions options;
  if (auto name = args.opt_str("name")) {
    if (auto expected = policy::check_app_name(*name)) {
      args.bad("name", *expected + ", got " + describe_json(*name));
    }
    options.name_override = *name;
  }
  out.uid_maps = maps_arg(args, "uid_maps");
  out.gid_maps = maps_arg(args, "gid_maps");
  try {
    out.spec = policy::parse_manifest(manifest, source, options);
  } catch (const policy::ManifestError& e) {
    refuse(e.what());
  }
  return out;
}

void require_shares(const State& state, const std::vector<policy::Grant>& grants) {
  for (const auto& g : grants) {
    if (g.kind == policy::GrantKind::shared) require_share(state, g.name);
  }
}

// Whether data dir `name` is `other` or holds it ("data" holds "data/documents").
bool holds(const std::string& name, const std::string& other) {
  return other == name || other.starts_with(name + "/");
}

// A version for the admin's terminal: "-" for none, control characters written out.
std::string shown_version(const std::string& version) {
  return version.empty() ? "-" : common::escape_for_message(version);
}

// Long enough for two names that give one id (ids are cut at 63 characters) to show apart.
constexpr std::size_t kMaxShownName = 256;

// A name as messages show it: quoted, control characters escaped ("a\nb"), so it stays on
// its line.
std::string shown_name(const std::string& name) { return describe_json(name, kMaxShownName); }

// Two names that give one id would be one app: the second would get the first one's data and
// mounts. So only the name an app was installed under installs or upgrades it again (a record
// from before names were kept takes any name that gives its id).
void require_same_name(const std::string& app, const AppRecord& rec, const policy::AppSpec& spec) {
  if (rec.installed_as.empty() || rec.installed_as == spec.given_name) return;
  refuse("app name " + shown_name(spec.given_name) + " is served as id " + app + ", which app " +
         shown_name(rec.installed_as) + " already has; pick another name with --name");
}

// Says that the name had to be made into an id, as a line above the mounts. Text only: the
// json output is the mounts array (app show has installed_as).
std::string name_note(const policy::AppSpec& spec, bool json) {
  if (json || spec.given_name == spec.name) return "";
  return "note: app name " + shown_name(spec.given_name) + " is served as id " + spec.name + "\n";
}

std::string maps_text(const std::vector<policy::IdRange>& ranges) {
  if (ranges.empty()) return "identity";
  std::string out;
  for (const auto& r : ranges) out += (out.empty() ? "" : ",") + format_range(r);
  return out;
}

Outcome app_install(Manager::Impl& mgr, const Request& req) {
  if (req.args.contains("compose")) return mgr.compose_install(req, false);
  const Args args(req, {"manifest", "source", "name", "uid_maps", "gid_maps"});
  ManifestArgs m = manifest_args(args);
  const std::string& app = m.spec.name;
  const auto installed_app = mgr.state.apps.find(app);
  if (installed_app != mgr.state.apps.end()) require_same_name(app, installed_app->second, m.spec);
  require_shares(mgr.state, m.spec.grants);
  const std::string note = name_note(m.spec, req.json);

  if (installed_app != mgr.state.apps.end()) {
    // Installing again what is installed is no change; anything else is an upgrade.
    const AppRecord& rec = installed_app->second;
    const bool same = rec.version == m.spec.version && rec.grants == m.spec.grants &&
                      (!m.uid_maps || *m.uid_maps == rec.uid_maps) && (!m.gid_maps || *m.gid_maps == rec.gid_maps);
    if (!same) refuse("app " + app + " is installed; use app upgrade");
    return {note + mgr.mounts_output(app, rec, req.json)};
  }

  State next = mgr.state;
  AppRecord& rec = next.apps[app].edit();
  rec.installed_as = m.spec.given_name;
  rec.version = m.spec.version;
  rec.uid_maps = m.uid_maps.value_or(std::vector<policy::IdRange>{});
  rec.gid_maps = m.gid_maps.value_or(std::vector<policy::IdRange>{});
  rec.grants = std::move(m.spec.grants);
  mgr.provision_app(next, app, rec, {});
  Outcome out{note + mgr.mounts_output(app, rec, req.json)};
  out.next = std::move(next);
  return out;
}

Outcome app_upgrade(Manager::Impl& mgr, const Request& req) {
  if (req.args.contains("compose")) return mgr.compose_install(req, true);
  const Args args(req, {"manifest", "source", "prune", "name", "uid_maps", "gid_maps"});
  ManifestArgs m = manifest_args(args);
  const bool prune = args.flag("prune");
  const std::string& app = m.spec.name;
  if (!mgr.state.apps.contains(app)) refuse("app " + app + " is not installed; use app install");
  require_same_name(app, mgr.state.apps.at(app), m.spec);
  require_shares(mgr.state, m.spec.grants);

  State next = mgr.state;
  AppRecord& rec = next.apps[app].edit();
  const std::vector<DataDirRecord> previous = rec.data_dirs;
  rec.installed_as = m.spec.given_name;  // recorded now if the record is older than names
  rec.version = m.spec.version;
  if (m.uid_maps) rec.uid_maps = *m.uid_maps;
  if (m.gid_maps) rec.gid_maps = *m.gid_maps;
  rec.grants = std::move(m.spec.grants);
  // What the admin decided (grants, revokes, storage mounts) stays, and must still fit.
  mgr.check_no_clash(app, rec);
  mgr.provision_app(next, app, rec, previous);

  // Prune: the data directories no longer in the manifest go, after the state without them is
  // saved. One that holds a directory still in use stays (deleting it would delete that too).
  std::vector<std::string> doomed;
  if (prune) {
    std::vector<DataDirRecord> kept;
    for (const auto& d : rec.data_dirs) {
      const bool holds_live = d.removed && std::any_of(rec.data_dirs.begin(), rec.data_dirs.end(), [&](const auto& o) {
                                return !o.removed && holds(d.name, o.name);
                              });
      if (d.removed && !holds_live) {
        doomed.push_back(d.name);
        continue;
      }
      if (holds_live) {
        common::log(common::LogLevel::warn, "app " + app + ": data dir " + d.name +
                                                " holds a data dir still in use; not pruned");
      }
      kept.push_back(d);
    }
    rec.data_dirs = std::move(kept);
  }

  // Recorded in the state before anything is deleted, so a crash can't leave it half done.
  for (const auto& name : doomed) next.removals.push_back("apps/" + app + "/" + name);
  Outcome out{name_note(m.spec, req.json) + mgr.mounts_output(app, rec, req.json)};
  out.next = std::move(next);
  if (!doomed.empty()) out.after_commit = mgr.remove_recorded("app " + app + " upgraded, but pruning");
  return out;
}

Outcome app_remove(Manager::Impl& mgr, const Request& req) {
  const Args args(req, {"app", "purge"});
  const std::string app = mgr.app_arg(args);
  if (!mgr.state.apps.contains(app) && mgr.is_compose_app(app)) return mgr.compose_remove(req);
  const bool purge = args.flag("purge");
  const std::string data_path = mgr.config.storage_root + "/" + mgr.config.apps_dir + "/" + app;

  Outcome out;
  out.takes_away = true;
  out.after_commit = mgr.remove_recorded("deleting the data of app " + app);
  State next = mgr.state;
  // The purge is recorded before it starts (carried out at the next start after a crash).
  if (purge) next.removals.push_back("apps/" + app);
  if (!mgr.state.apps.contains(app)) {
    // A purge of what a remove without --purge left behind.
    if (!purge || !dir_exists(mgr.open_root(), app_dir_components(app, mgr.config.apps_dir))) {
      refuse("app " + app + " is not installed");
    }
    out.output = req.json ? nlohmann::json({{"app", app}, {"purged", true}}).dump(2) + "\n"
                          : "deleted the data of app " + app + " (" + data_path + ")\n";
    out.next = std::move(next);
    return out;
  }

  next.apps.erase(app);
  // Its attachments stay until its views are unmounted from their containers, once the views
  // are gone (Manager::Impl::follow_grants), and are forgotten then.
  out.next = std::move(next);
  if (req.json) {
    out.output = nlohmann::json({{"app", app}, {"purged", purge}}).dump(2) + "\n";
  } else if (purge) {
    out.output = "removed app " + app + " and deleted its data\n";
  } else {
    out.output = "removed app " + app + "; its data stays in " + data_path +
                 " (installing it again brings it back; app remove --purge deletes it)\n";
  }
  return out;
}

Outcome app_list(const Manager::Impl& mgr, const Request& req) {
  const Args args(req, {});
  if (req.json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& [name, rec] : mgr.state.apps) out.push_back({{"name", name}, {"version", rec->version}});
    return {out.dump(2) + "\n"};
  }
  std::string out;
  for (const auto& [name, rec] : mgr.state.apps) out += name + " " + shown_version(rec->version) + "\n";
  return {out};
}

Outcome app_show(const Manager::Impl& mgr, const Request& req) {
  const Args args(req, {"app"});
  const std::string app = mgr.app_arg(args);
  const AppRecord& rec = mgr.installed(app);
  // Each running container the app is attached to, with the container paths it has now (they
  // follow the app's grants: mountmgr/attachments.cpp).
  std::vector<const Attachment*> attachments;
  for (const auto& a : mgr.state.attachments) {
    if (a.app == app) attachments.push_back(&a);
  }
  if (req.json) {
    nlohmann::json out = app_to_json(rec);
    out["name"] = app;
    out["mounts"] = nlohmann::json::parse(mgr.mounts_output(app, rec, true));
    nlohmann::json pids = nlohmann::json::array();
    nlohmann::json attached = nlohmann::json::array();
    for (const Attachment* a : attachments) {
      nlohmann::json paths = nlohmann::json::array();
      for (const Bind& b : a->binds) paths.push_back(b.target);
      pids.push_back(a->pid);
      attached.push_back({{"pid", a->pid}, {"paths", std::move(paths)}});
    }
    out["attached_pids"] = std::move(pids);
    out["attachments"] = std::move(attached);
    return {out.dump(2) + "\n"};
  }
  std::string out = "app: " + app + "\n";
  out += "version: " + shown_version(rec.version) + "\n";
  out += "uid_maps: " + maps_text(rec.uid_maps) + "\n";
  out += "gid_maps: " + maps_text(rec.gid_maps) + "\n";
  for (const auto& g : effective_grants(rec)) {
    out += "grant: " + describe_grant(g) + " at " + g.container_path + " (" + policy::to_string(g.access) +
           (g.owner ? ", owner " + format_owner(*g.owner) : "") + sidecars_text(g) +
           (g.audit_reads ? ", reads audited" : "") + ")\n";
  }
  for (const auto& share : rec.revoked) out += "revoked: share " + share + "\n";
  for (const auto& d : rec.data_dirs) {
    out += "data_dir: " + d.name + " (created by " + shown_version(d.created_by_version) +
           (d.removed ? "; no longer in the manifest, kept on disk" : "") + ")\n";
  }
  for (const Attachment* a : attachments) {
    std::string paths;
    for (const Bind& b : a->binds) paths += (paths.empty() ? " at " : ", ") + b.target;
    out += "attached: pid " + std::to_string(a->pid) + (paths.empty() ? " (no mounts)" : paths) + "\n";
  }
  return {out};
}

}  // namespace

// The args of each verb; a field not marked optional is required.
std::span<const Verb> app_verbs() {
  static constexpr Verb kVerbs[] = {
      // {manifest: "<file contents>", source: "<file name for messages>", name?: "<id>",
      //  uid_maps?: ["C:H:N",...], gid_maps?: ["C:H:N",...]}
      {"app.install", app_install},
      // {manifest, source, prune?: bool, name?, uid_maps?, gid_maps?}: as for app.install; maps
      // given replace the app's, maps left out keep them
      {"app.upgrade", app_upgrade},
      {"app.remove", app_remove},  // {app, purge?: bool}
      {"app.list", app_list},      // {}
      {"app.show", app_show},      // {app}
  };
  return kVerbs;
}

}  // namespace portalfs::mountmgr
