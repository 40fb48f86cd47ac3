// SPDX-License-Identifier: MIT
// share.create, share.list, grant, revoke.

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>

#include "common/beneath.hpp"
#include "common/btrfs.hpp"
#include "mountmgr/manager_impl.hpp"
#include "mountmgr/views.hpp"
#include "policy/trash.hpp"

namespace portalfs::mountmgr {
namespace {

std::string share_arg(const Args& args, std::string_view key) {
  std::string share = args.str(key);
  if (auto expected = policy::check_share_name(share)) {
    args.bad(key, *expected + ", got " + describe_json(share));
  }
  return share;
}

std::optional<policy::Grant> find_share_grant(const std::vector<policy::Grant>& grants, const std::string& share) {
  for (const auto& g : grants) {
    if (g.kind == policy::GrantKind::shared && g.name == share) return g;
  }
  return std::nullopt;
}

// The "trash" argument: a retention (policy::parse_retention) in seconds, 0 for off.
std::optional<int64_t> trash_arg(const Args& args) {
  const auto text = args.opt_str("trash");
  if (!text) return std::nullopt;
  std::string expected;
  const auto seconds = policy::parse_retention(*text, &expected);
  if (!seconds) args.bad("trash", expected + ", got " + describe_json(*text));
  return seconds;
}

// Gives `share` in `next` a trash kept `seconds` (0: none), making its directory when it
// gets one (root-owned 0700, outside every view).
void set_share_trash(Manager::Impl& mgr, State& next, const std::string& share, int64_t seconds) {
  if (seconds == 0) {
    next.share_trash.erase(share);
    return;
  }
  // The trash is on the storage root's file system: a delete is a rename there. A share on
  // btrfs is a subvolume (for its quota), and a share may be a disk of its own: moving a file
  // out of either is refused by the kernel (EXDEV), so every delete would fail.
  const StorageRoot root = mgr.open_root();
  if (auto dir = common::open_beneath(root.fd(), share_dir_components(share), O_RDONLY)) {
    if (common::subvolume_root_id(dir->get())) {
      refuse("share " + share + " is a btrfs subvolume (so a quota can limit it); a trash would be outside it and "
             "moving deleted files there fails (EXDEV): on btrfs a share gets a trash only when created with one (share create --trash)");
    }
    struct stat share_st {}, root_st {};
    if (::fstat(dir->get(), &share_st) == 0 && ::fstat(root.fd(), &root_st) == 0 && share_st.st_dev != root_st.st_dev) {
      refuse("share " + share + " is a file system of its own (a disk mounted on its directory); its trash would be "
             "on the storage root's, and moving deleted files there fails (EXDEV): a trash needs the share on the "
             "storage root's file system");
    }
  }
  next.share_trash[share] = seconds;
  ensure_dir(root, share_trash_components(share), LeafSpec{policy::Owner{0, 0}, 0700, false, std::nullopt});
}

std::string trash_note(const State& state, const std::string& share) {
  const auto it = state.share_trash.find(share);
  return it == state.share_trash.end() ? "" : ", trash " + policy::format_retention(it->second);
}

Outcome share_create(Manager::Impl& mgr, const Request& req) {
  const Args args(req, {"name", "owner", "trash"});
  const std::string share = share_arg(args, "name");
  const auto trash = trash_arg(args);
  policy::Owner owner;
  const bool owner_given = args.opt_str("owner").has_value();
  if (auto text = args.opt_str("owner")) {
    try {
      owner = parse_owner(*text);
    } catch (const std::invalid_argument& e) {
      args.bad("owner", e.what() + std::string(", got ") + describe_json(*text));
    }
  }
  if (mgr.state.shares.contains(share)) refuse("share '" + share + "' exists");

  State next = mgr.state;
  next.shares[share] = owner;
  // A create that names the owner gives it to an existing directory (left from before) too;
  // one that does not takes an existing directory as it is (a Freeshard share adopted in
  // place) and records the owner it has.
  LeafSpec leaf;
  leaf.owner = owner;
  leaf.chown_existing = owner_given;
  leaf.subvolume = !trash || *trash == 0;  // see set_share_trash()
  const Ensured ensured = ensure_dir(mgr.open_root(), share_dir_components(share), leaf);
  if (!owner_given && ensured.existing_owner) {
    owner = *ensured.existing_owner;
    next.shares[share] = owner;
  }
  if (trash) set_share_trash(mgr, next, share, *trash);

  const std::string path = mgr.config.storage_root + "/shared/" + share;
  Outcome out;
  nlohmann::json created = {{"name", share}, {"owner", format_owner(owner)}, {"path", path}};
  if (next.share_trash.contains(share)) created["trash"] = policy::format_retention(next.share_trash.at(share));
  out.output = req.json ? created.dump(2) + "\n"
                        : "created share " + share + " at " + path + " (owner " + format_owner(owner) +
                              trash_note(next, share) + ")\n";
  out.next = std::move(next);
  return out;
}

Outcome share_set(Manager::Impl& mgr, const Request& req) {
  const Args args(req, {"name", "trash"});
  const std::string share = share_arg(args, "name");
  const auto trash = trash_arg(args);
  if (!trash) args.bad("trash", "missing: say what to set (--trash 30d or --trash off)");
  require_share(mgr.state, share);

  State next = mgr.state;
  set_share_trash(mgr, next, share, *trash);
  Outcome out;
  const std::string retention = policy::format_retention(*trash);
  out.output = req.json ? nlohmann::json({{"name", share}, {"trash", retention}}).dump(2) + "\n"
               : *trash ? "share " + share + ": deletes go to its trash, kept " + retention + "\n"
                        : "share " + share + ": deletes delete; what is in its trash stays until "
                                             "portalctl trash purge " + share + "\n";
  out.next = std::move(next);
  return out;
}

Outcome share_list(const Manager::Impl& mgr, const Request& req) {
  const Args args(req, {});
  // Which apps are served each share, for the admin deciding what to grant or revoke.
  std::map<std::string, std::vector<std::string>> users;
  for (const auto& [app, rec] : mgr.state.apps) {
    for (const auto& g : effective_grants(rec)) {
      if (g.kind == policy::GrantKind::shared) users[g.name].push_back(app);
    }
  }
  if (req.json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& [name, owner] : mgr.state.shares) {
      out.push_back({{"name", name},
                     {"owner", format_owner(owner)},
                     {"path", mgr.config.storage_root + "/shared/" + name},
                     {"apps", users[name]}});
      if (auto trash = mgr.state.share_trash.find(name); trash != mgr.state.share_trash.end()) {
        out.back()["trash"] = policy::format_retention(trash->second);
      }
    }
    return {out.dump(2) + "\n"};
  }
  std::string out;
  for (const auto& [name, owner] : mgr.state.shares) {
    const auto trash = mgr.state.share_trash.find(name);
    out += name + " " + format_owner(owner) +
           (trash == mgr.state.share_trash.end() ? "" : " trash " + policy::format_retention(trash->second)) + "\n";
  }
  return {out};
}

Outcome grant(Manager::Impl& mgr, const Request& req) {
  const Args args(req, {"app", "share", "access", "path", "sidecars", "audit_reads"});
  const std::string app = mgr.app_arg(args);
  const std::string share = share_arg(args, "share");
  const std::string access_text = args.str("access");
  const auto access = policy::parse_access(access_text);
  if (!access) args.bad("access", "expected one of " + policy::access_names() + ", got " + describe_json(access_text));
  const std::string path = policy::normalise_container_path(args.str("path"));
  if (auto expected = policy::check_container_path(path)) {
    args.bad("path", *expected + ", got " + describe_json(path));
  }
  const std::vector<std::string> sidecars = args.opt_str_list("sidecars").value_or(std::vector<std::string>{});
  for (const std::string& p : sidecars) {
    if (auto expected = policy::check_sidecar_pattern(p)) {
      args.bad("sidecars", *expected + ", got " + describe_json(p));
    }
  }
  if (!sidecars.empty() && *access != policy::Access::read) {
    args.bad("sidecars", std::string("expected none with ") + policy::to_string(*access) + ": sidecars widen a read grant");
  }
  // A grant replaces the last: without audit_reads, reads are no longer recorded.
  const bool audit_reads = args.flag("audit_reads");
  mgr.installed(app);
  require_share(mgr.state, share);

  State next = mgr.state;
  AppRecord& rec = next.apps[app].edit();
  // A grant of a share the app already has replaces it (a change of access or path); the owner
  // it is presented as stays, as the app's files expect it.
  const auto current = find_share_grant(effective_grants(rec), share);
  policy::Grant granted{policy::GrantKind::shared, share, path, *access, current ? current->owner : std::nullopt,
                        sidecars, audit_reads};
  std::erase_if(rec.admin_grants, [&](const policy::Grant& g) { return g.name == share; });
  std::erase(rec.revoked, share);
  // An admin grant equal to the manifest's is no override: keep the record minimal.
  const auto manifest = find_share_grant(rec.grants, share);
  if (!manifest || *manifest != granted) rec.admin_grants.push_back(granted);
  mgr.check_no_clash(app, rec);
  ensure_dir(mgr.open_root(), share_dir_components(share), LeafSpec{next.shares[share], 0755, false, std::nullopt});

  Outcome out;
  // A narrower mode takes a right away: it applies even on a full disk.
  out.takes_away = current && (policy::narrower(*access, current->access) ||
                               std::any_of(current->sidecars.begin(), current->sidecars.end(), [&](const std::string& p) {
                                 return std::find(sidecars.begin(), sidecars.end(), p) == sidecars.end();
                               }));
  out.output = req.json ? nlohmann::json({{"app", app}, {"share", share}, {"access", policy::to_string(*access)},
                                          {"path", path}, {"audit_reads", audit_reads}})
                                  .dump(2) + "\n"
                        : "granted share " + share + " to app " + app + " at " + path + " (" +
                              policy::to_string(*access) + (audit_reads ? ", reads audited" : "") + ")\n";
  out.next = std::move(next);
  return out;
}

Outcome revoke(Manager::Impl& mgr, const Request& req) {
  const Args args(req, {"app", "share", "force"});
  const std::string app = mgr.app_arg(args);
  const std::string share = share_arg(args, "share");
  const bool force = args.flag("force");
  const AppRecord& current = mgr.installed(app);
  const auto revoked = find_share_grant(effective_grants(current), share);
  if (!revoked) refuse("app " + app + " has no grant of share " + share);

  State next = mgr.state;
  AppRecord& rec = next.apps[app].edit();
  std::erase_if(rec.admin_grants, [&](const policy::Grant& g) { return g.name == share; });
  if (find_share_grant(rec.grants, share) && std::find(rec.revoked.begin(), rec.revoked.end(), share) == rec.revoked.end()) {
    rec.revoked.push_back(share);
  }

  Outcome out;
  out.takes_away = true;
  if (force) out.killed.push_back(make_view(mgr.state, mgr.config.storage_root, app, current, *revoked, mgr.config.apps_dir));
  out.output = req.json ? nlohmann::json({{"app", app}, {"share", share}, {"force", force}}).dump(2) + "\n"
                        : "revoked share " + share + " from app " + app +
                              (force ? " (writes to its open files fail now; reads and mappings made before last until closed)\n" : "\n");
  out.next = std::move(next);
  return out;
}

}  // namespace

// The args of each verb; a field not marked optional is required.
std::span<const Verb> share_verbs() {
  static constexpr Verb kVerbs[] = {
      {"share.create", share_create},  // {name, owner?: "UID:GID", trash?: "30d"|"off"}
      {"share.set", share_set},        // {name, trash: "30d"|"off"}
      {"share.list", share_list},      // {}
      {"grant", grant},                // {app, share, access, path: "/in/container", sidecars?, audit_reads?: bool}
      {"revoke", revoke},              // {app, share, force?: bool}
  };
  return kVerbs;
}

}  // namespace portalfs::mountmgr
