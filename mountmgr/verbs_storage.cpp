// SPDX-License-Identifier: MIT
// mounts, attach, detach, the Dokku-compatible storage.* verbs, and who (a file's provenance).

#include <fcntl.h>

#include <algorithm>
#include <filesystem>
#include <optional>

#include "common/beneath.hpp"
#include "common/log.hpp"
#include "mountmgr/manager_impl.hpp"
#include "mountmgr/mount_spec.hpp"
#include "mountmgr/paths.hpp"
#include "mountmgr/report.hpp"
#include "mountmgr/views.hpp"
#include "mountmgr/who.hpp"
#include "policy/trash.hpp"

namespace portalfs::mountmgr {
namespace {

namespace fs = std::filesystem;

nlohmann::json binds_json(const std::vector<Bind>& binds) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& b : binds) out.push_back({{"source", b.source}, {"target", b.target}, {"read_only", b.read_only}});
  return out;
}

// "HOST:CTR[:ro|:rw]" as Dokku takes it.
StorageMount parse_spec(const Args& args) {
  const std::string spec = args.str("spec");
  const auto parts = split_storage_spec(spec);
  if (!parts) args.bad("spec", "expected HOST:CONTAINER or HOST:CONTAINER:ro, got " + describe_json(spec));
  StorageMount m;
  m.host_path = normalise_host_path(parts->host);
  try {
    check_host_path(m.host_path);
  } catch (const std::invalid_argument& e) {
    args.bad("spec", e.what() + std::string(", got ") + describe_json(parts->host));
  }
  m.container_path = policy::normalise_container_path(parts->container);
  if (auto expected = policy::check_container_path(m.container_path)) {
    args.bad("spec", "container path: " + *expected + ", got " + describe_json(parts->container));
  }
  m.read_only = parts->read_only;
  return m;
}

// The path with symlinks resolved as far as it exists (for comparing where things really are).
std::string resolved(const std::string& path) {
  std::error_code ec;
  fs::path p = fs::weakly_canonical(path, ec);
  return ec ? path : normalise_host_path(p.string());
}

std::vector<StorageEntry> storage_entries(const std::string& mountpoint, const std::string& app, const AppRecord& rec) {
  std::vector<StorageEntry> out;
  for (const auto& g : effective_grants(rec)) {
    const bool host = g.kind == policy::GrantKind::host;
    out.push_back({host ? g.name : view_path(mountpoint, app, g), g.container_path, policy::mounted_read_only(g)});
  }
  return out;
}

Outcome mounts(const Manager::Impl& mgr, const Request& req) {
  const Args args(req, {"app", "style"});
  const std::string app = mgr.app_arg(args);
  const std::string style_text = args.str("style");
  const auto style = parse_mount_style(style_text);
  if (!style) args.bad("style", R"(expected "docker", "oci" or "json", got )" + describe_json(style_text));
  const AppRecord& rec = mgr.installed(app);
  try {
    return {render_mounts(mount_entries(mgr.config.mountpoint, app, effective_grants(rec)), *style)};
  } catch (const std::invalid_argument& e) {
    refuse("app " + app + ": " + e.what());
  }
}

Outcome attach(Manager::Impl& mgr, const Request& req) {
  const Args args(req, {"app", "pid"});
  const std::string app = mgr.app_arg(args);
  const int pid = static_cast<int>(args.integer("pid", 1, INT32_MAX));
  const AppRecord& rec = mgr.installed(app);
  const AttachOps& ops = mgr.config.attach_ops;
  // The process as it is now is what gets recorded, and attach_binds enters its namespace only
  // if it is still that one.
  const auto process = ops.identify(pid);
  if (!process) refuse("process " + std::to_string(pid) + " does not exist");

  const std::vector<Bind> binds = app_binds(mgr.config.mountpoint, app, rec);
  try {
    ops.attach(*process, binds);
  } catch (const std::runtime_error& e) {
    failed("attaching app " + app + " to pid " + std::to_string(pid) + ": " + e.what());
  }
  State next = mgr.state;
  // A record of the same pid may be of an earlier process that had it: replaced all the same.
  std::erase_if(next.attachments, [&](const Attachment& a) { return a.app == app && a.pid == pid; });
  next.attachments.push_back({app, pid, binds, *process});
  Outcome out;
  // The mounts are in; if the record can't be saved they must come out again, or a restart
  // would leave them dead and unrecorded.
  out.undo = [&ops, process = *process, binds, app] {
    try {
      ops.detach(process, detach_targets(binds));
    } catch (const std::runtime_error& e) {
      common::log(common::LogLevel::error,
                  "undoing the attach of " + app + " to pid " + std::to_string(process.pid) + ": " + e.what());
    }
  };
  out.output = req.json ? nlohmann::json({{"app", app}, {"pid", pid}, {"binds", binds_json(binds)}}).dump(2) + "\n"
                        : "attached " + std::to_string(binds.size()) + " mount(s) of app " + app + " to pid " +
                              std::to_string(pid) + "\n";
  out.next = std::move(next);
  return out;
}

Outcome detach(Manager::Impl& mgr, const Request& req) {
  const Args args(req, {"app", "pid"});
  const std::string app = mgr.app_arg(args);
  const int pid = static_cast<int>(args.integer("pid", 1, INT32_MAX));
  const auto it = std::find_if(mgr.state.attachments.begin(), mgr.state.attachments.end(),
                               [&](const Attachment& a) { return a.app == app && a.pid == pid; });
  if (it == mgr.state.attachments.end()) refuse("app " + app + " is not attached to pid " + std::to_string(pid));
  const AttachOps& ops = mgr.config.attach_ops;
  // Only the recorded process's namespace is touched. A process that is gone took its namespace
  // with it, and one that now has its pid is someone else (maybe another container, with mounts
  // of its own at these paths): either way only the record is left to drop.
  const std::string why = not_the_recorded_process(*it, ops);
  if (why.empty()) {
    try {
      ops.detach(*it->process, detach_targets(it->binds));
    } catch (const std::runtime_error& e) {
      failed("detaching app " + app + " from pid " + std::to_string(pid) + ": " + e.what());
    }
  } else {
    common::log(common::LogLevel::info,
                "forgetting the attachment of " + app + " to pid " + std::to_string(pid) + ": " + why);
  }
  State next = mgr.state;
  std::erase_if(next.attachments, [&](const Attachment& a) { return a.app == app && a.pid == pid; });
  Outcome out;
  out.takes_away = true;  // the mounts are gone: the record must go too, saved or not
  if (req.json) {
    nlohmann::json result = {{"app", app}, {"pid", pid}, {"detached", why.empty()}};
    if (!why.empty()) result["forgotten_because"] = why;
    out.output = result.dump(2) + "\n";
  } else if (why.empty()) {
    out.output = "detached app " + app + " from pid " + std::to_string(pid) + "\n";
  } else {
    out.output = "forgot the attachment of app " + app + " to pid " + std::to_string(pid) +
                 " without touching any mount: " + why + "\n";
  }
  out.next = std::move(next);
  return out;
}

Outcome storage_list(const Manager::Impl& mgr, const Request& req) {
  const Args args(req, {"app"});
  const std::string app = mgr.app_arg(args);
  return {render_storage_list(storage_entries(mgr.config.mountpoint, app, mgr.installed(app)), req.json)};
}

Outcome storage_mount(Manager::Impl& mgr, const Request& req) {
  const Args args(req, {"app", "spec"});
  const std::string app = mgr.app_arg(args);
  const StorageMount mount = parse_spec(args);
  mgr.installed(app);

  std::error_code ec;
  if (!fs::is_directory(mount.host_path, ec)) {
    refuse("storage.mount: " + mount.host_path + " is not an existing directory (Dokku never creates it either; " +
           "storage:ensure-directory makes one)");
  }
  // The view is reached from "/" one component at a time, never through a symlink (a symlink
  // on the way could be swapped for another target before the next start): say so now.
  {
    const auto components = common::split_components(std::string_view(mount.host_path).substr(1));
    common::UniqueFd slash(::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
    common::WalkFailure failure;
    if (!common::open_beneath(slash.get(), components, O_PATH, &failure)) {
      refuse("storage.mount: " + common::describe_walk_failure("/", components, failure) +
             "; give the directory without symbolic links");
    }
  }
  // Serving the filesystem inside itself would loop; serving the backing store would bypass
  // every app's policy. Compared with symlinks resolved.
  const std::string host = resolved(mount.host_path);
  const std::string mountpoint = resolved(mgr.config.mountpoint);
  const std::string root = resolved(mgr.config.storage_root);
  if (path_within(mountpoint, host) || path_within(host, mountpoint)) {
    refuse("storage.mount: " + mount.host_path + " overlaps the portalfs mountpoint " + mgr.config.mountpoint);
  }
  if (path_within(root, host) || path_within(host, root + "/" + mgr.config.apps_dir) || path_within(host, root + "/shared") ||
      path_within(host, root + "/trash") || path_within(host, root + "/" + policy::kShareTrashDir)) {
    refuse("storage.mount: " + mount.host_path + " is app data or a share of portalfs' storage root; " +
           "use grant to give an app a share");
  }

  State next = mgr.state;
  AppRecord& rec = next.apps[app].edit();
  // Dokku upserts: the same host and container path again replaces the mount (ro <-> rw).
  std::erase_if(rec.storage_mounts, [&](const StorageMount& m) {
    return m.host_path == mount.host_path && m.container_path == mount.container_path;
  });
  rec.storage_mounts.push_back(mount);
  mgr.check_no_clash(app, rec);

  Outcome out;
  if (req.json) {
    out.output = render_storage_list({{mount.host_path, mount.container_path, mount.read_only}}, true);
  }
  out.next = std::move(next);
  return out;
}

Outcome storage_unmount(Manager::Impl& mgr, const Request& req) {
  const Args args(req, {"app", "spec"});
  const std::string app = mgr.app_arg(args);
  const StorageMount mount = parse_spec(args);
  mgr.installed(app);
  State next = mgr.state;
  AppRecord& rec = next.apps[app].edit();
  const auto removed = std::erase_if(rec.storage_mounts, [&](const StorageMount& m) {
    return m.host_path == mount.host_path && m.container_path == mount.container_path;
  });
  if (removed == 0) {
    refuse("app " + app + " has no storage mount " + mount.host_path + ":" + mount.container_path);
  }
  Outcome out;
  out.takes_away = true;
  if (req.json) out.output = nlohmann::json({{"host_path", mount.host_path}, {"container_path", mount.container_path}}).dump(2) + "\n";
  out.next = std::move(next);
  return out;
}

// disk.forget {path}: forgets the mount recorded for a share's directory or a storage:mount
// path (state `mounts`), for a disk retired or replaced on purpose: the path is served as it
// leads now, and the next check (every 2 s) records the mount it finds there, if any.
Outcome disk_forget(Manager::Impl& mgr, const Request& req) {
  const Args args(req, {"path"});
  const std::string path = args.str("path");
  State next = mgr.state;
  if (std::erase_if(next.mounts, [&](const BackingMount& m) { return m.path == path; }) == 0) {
    args.bad("path", "no disk is recorded for " + describe_json(path) + " (portalctl status lists them under mounts)");
  }
  // Served as it leads now; a view that answered EIO re-opens its root (a new epoch). Outside
  // the state, so put back should the state not be saved.
  std::optional<std::string> was_offline;
  if (auto it = mgr.mounts_offline.find(path); it != mgr.mounts_offline.end()) {
    was_offline = std::move(it->second);
    mgr.mounts_offline.erase(it);
  }
  ++mgr.mount_epochs[path];
  Outcome out("forgot the disk recorded for " + path + ": served as it leads now; a disk mounted there is recorded "
              "at the next check\n");
  if (req.json) out.output = nlohmann::json({{"path", path}, {"forgotten", true}}).dump(2) + "\n";
  out.undo = [&mgr, path, was_offline] {
    if (was_offline) mgr.mounts_offline[path] = *was_offline;
  };
  out.next = std::move(next);
  return out;
}

Outcome storage_report(const Manager::Impl& mgr, const Request& req) {
  const Args args(req, {"app", "only"});
  std::optional<Phase> only;
  if (auto text = args.opt_str("only")) {
    only = parse_phase(*text);
    if (!only) args.bad("only", R"(expected "build", "deploy" or "run", got )" + describe_json(*text));
  }
  std::vector<std::pair<std::string, std::vector<StorageEntry>>> apps;
  if (args.opt_str("app")) {
    const std::string app = mgr.app_arg(args);
    apps.emplace_back(app, storage_entries(mgr.config.mountpoint, app, mgr.installed(app)));
  } else {
    for (const auto& [name, rec] : mgr.state.apps) apps.emplace_back(name, storage_entries(mgr.config.mountpoint, name, rec));
  }
  return {render_storage_report(apps, only, req.json)};
}

Outcome storage_ensure_directory(Manager::Impl& mgr, const Request& req) {
  const Args args(req, {"name", "chown"});
  const std::string name = args.str("name");
  try {
    check_storage_dir_name(name);
  } catch (const std::invalid_argument& e) {
    args.bad("name", e.what() + std::string(", got ") + describe_json(name));
  }
  const std::string preset_name = args.opt_str("chown").value_or("herokuish");
  const auto preset = parse_chown_preset(preset_name);
  if (!preset) {
    args.bad("chown", R"(expected "herokuish", "heroku", "packeto" or "false", got )" + describe_json(preset_name));
  }
  std::optional<policy::Owner> owner;
  if (preset->chown) owner = preset->owner;
  // Dokku chowns on every call: the directory may have been made by hand.
  LeafSpec leaf;
  leaf.owner = owner;
  leaf.chown_existing = true;
  ensure_dir(mgr.open_root(), storage_dir_components(name), leaf);
  return {render_ensure_directory(mgr.config.storage_root + "/storage/" + name, owner, req.json)};
}

// `path` (normalised) with a spelling of the mountpoint or the storage root that resolves the
// symlinks above it (as getcwd() does, and so portalctl's relative paths) put back as
// configured. Only the mountpoint's parent is resolved: the mountpoint is this daemon's own
// filesystem, never looked up from here.
std::string as_configured(std::string path, const ManagerConfig& config) {
  const auto respell = [&path](const std::string& configured, const fs::path& real_dir) {
    const std::string real = normalise_host_path(real_dir.string());
    if (real != configured && !path_within(path, configured) && path_within(path, real)) {
      path = configured + path.substr(real.size());
    }
  };
  const fs::path mountpoint(config.mountpoint);
  std::error_code ec;
  const fs::path parent = fs::weakly_canonical(mountpoint.parent_path(), ec);
  if (!ec) respell(config.mountpoint, parent / mountpoint.filename());
  const fs::path root = fs::weakly_canonical(config.storage_root, ec);
  if (!ec) respell(config.storage_root, root);
  return path;
}

nlohmann::json json_or_null(const std::optional<std::string>& value) {
  return value ? nlohmann::json(*value) : nlohmann::json(nullptr);
}

Outcome who(const Manager::Impl& mgr, const Request& req) {
  const Args args(req, {"path"});
  std::string path = args.str("path");
  if (path.starts_with('/') && path.find('\0') == std::string::npos) {
    path = as_configured(normalise_lexically(path), mgr.config);
  }
  BackingFile file;
  Provenance provenance;
  try {
    file = locate_backing(mgr.state, mgr.config, path);
    provenance = read_provenance(file, path);
  } catch (const std::invalid_argument& e) {
    refuse(std::string("who: ") + e.what());
  } catch (const std::runtime_error& e) {
    failed(std::string("who: ") + e.what());
  }
  if (!req.json) return {who_line(path, provenance)};
  nlohmann::json views = nlohmann::json::array();
  for (const auto& shown : views_showing(mgr.state, mgr.config, file)) {
    views.push_back({{"app", shown.app}, {"path", shown.path}, {"access", shown.access}});
  }
  const nlohmann::json out = {{"path", path},
                              {"backing", file.path()},
                              {"type", provenance.type},
                              {"created_by", json_or_null(provenance.created_by)},
                              {"changed_by", json_or_null(provenance.changed_by)},
                              {"views", views}};
  // The ids come from the disk: whatever bytes they hold, the answer stays valid JSON.
  return {out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n"};
}

}  // namespace

// The args of each verb; a field not marked optional is required.
std::span<const Verb> storage_verbs() {
  static constexpr Verb kVerbs[] = {
      {"mounts", mounts},                  // {app, style: "docker"|"oci"|"json"}
      {"attach", attach},                  // {app, pid: int}
      {"detach", detach},                  // {app, pid: int}
      {"storage.list", storage_list},      // {app}
      {"storage.mount", storage_mount},    // {app, spec: "HOST:CTR[:ro]"}
      {"storage.unmount", storage_unmount},  // {app, spec: "HOST:CTR"}
      {"storage.report", storage_report},  // {app?, only?: "deploy"|"run"|"build"}
      {"disk.forget", disk_forget},        // {path}
      // {name, chown?: "herokuish"|"heroku"|"packeto"|"false"}
      {"storage.ensure-directory", storage_ensure_directory},
      {"who", who},  // {path: "/abs/path" in a view or below the storage root}
  };
  return kVerbs;
}

}  // namespace portalfs::mountmgr
