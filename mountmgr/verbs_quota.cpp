// SPDX-License-Identifier: MIT
// quota.set, quota.clear, usage: limits per app and per share through the backing file
// system's project quotas (policy/quota.hpp, mountmgr/quota.hpp), and the warnings at 90 % and
// 100 %, checked by the worker every second (check_quota_levels).
//
// Where the storage root's file system has no project quotas, the limit is recorded as one
// portalfsd accounts itself (QuotaRecord::by_daemon): the views it limits are served without
// passthrough and every change is counted (fuse/quota_account.hpp). Nothing is tagged on disk.
//
// On a btrfs storage root the target's directory is a subvolume (made so by provisioning) and
// the limit is its qgroup's (common/btrfs.hpp): views keep passthrough, the kernel enforces,
// and `usage` reads the kernel's count. A directory made before it would be a subvolume falls
// back to the daemon's accounting. btrfs counts no inodes, so an inode limit is refused there
// rather than accounted by the daemon: that would cost the views their passthrough (the very
// thing the qgroup keeps) for a count the admin can do without; they decide, with one line.

#include <fcntl.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>

#include "common/audit.hpp"
#include "common/beneath.hpp"
#include "common/btrfs.hpp"
#include "common/log.hpp"
#include "mountmgr/manager_impl.hpp"
#include "mountmgr/quota.hpp"
#include "mountmgr/views.hpp"
#include "policy/quota.hpp"

namespace portalfs::mountmgr {
namespace {

using policy::QuotaKind;
using policy::QuotaTarget;

std::string describe(const QuotaTarget& t) {
  if (t.kind == QuotaKind::app_share) return "app " + t.app + " in share " + t.name;
  return (t.kind == QuotaKind::app ? "app " : "share ") + t.name;
}

// APP:SHARE: what the app created in the share (fuse/quota_account.hpp counts it by provenance).
// The app must exist and hold a grant of the share, unless a limit is recorded (to clear it).
QuotaTarget app_share_arg(const Manager::Impl& mgr, const Args& args, const std::string& text, const char* verb) {
  const auto key = policy::parse_quota_key(text);
  if (!key || key->kind != QuotaKind::app_share) {
    args.bad("target", "expected APP:SHARE (an app and a share it is granted), got " + describe_json(text));
  }
  if (mgr.state.quotas.contains(key->key())) return *key;
  const auto app = mgr.state.apps.find(key->app);
  if (app == mgr.state.apps.end()) refuse(std::string(verb) + ": " + describe_json(text) + ": no app named " + key->app);
  if (!mgr.state.shares.contains(key->name)) {
    refuse(std::string(verb) + ": " + describe_json(text) + ": no share named " + key->name);
  }
  const auto grants = effective_grants(app->second);
  if (std::none_of(grants.begin(), grants.end(), [&](const policy::Grant& g) {
        return g.kind == policy::GrantKind::shared && g.name == key->name;
      })) {
    refuse(std::string(verb) + ": " + describe_json(text) + ": app " + key->app + " has no grant of share " + key->name);
  }
  return *key;
}

// The target named by argument "target": an app, a share, or "apps/NAME" / "shared/NAME" for a
// name that is both (or an app or share gone whose quota is still recorded).
QuotaTarget target_arg(const Manager::Impl& mgr, const Args& args, const char* verb) {
  const std::string text = args.str("target");
  if (text.find(':') != std::string::npos) return app_share_arg(mgr, args, text, verb);
  if (auto key = policy::parse_quota_key(text)) {
    const bool exists = key->kind == QuotaKind::app
                            ? mgr.state.apps.contains(key->name) || std::any_of(mgr.state.apps.begin(), mgr.state.apps.end(),
                                                                                [&](const auto& a) { return a.second->storage_app == key->name; })
                            : mgr.state.shares.contains(key->name);
    if (!exists && !mgr.state.quotas.contains(text)) refuse(std::string(verb) + ": no " + describe(*key));
    return *key;
  }
  if (text.empty() || text.find('/') != std::string::npos) {
    args.bad("target", "expected an app, a share, apps/APP or shared/SHARE, got " + describe_json(text));
  }
  const auto app = mgr.state.apps.find(text);
  const bool is_compose = std::any_of(mgr.state.apps.begin(), mgr.state.apps.end(),
                                      [&](const auto& a) { return a.second->storage_app == text; });
  const bool is_app = app != mgr.state.apps.end() || is_compose;
  const bool is_share = mgr.state.shares.contains(text);
  if (is_app && is_share) {
    refuse(std::string(verb) + ": " + text + " is both an app and a share; name it apps/" + text + " or shared/" + text);
  }
  if (app != mgr.state.apps.end() && !app->second->storage_app.empty()) {
    refuse(std::string(verb) + ": app " + text + " is a service of compose app " + app->second->storage_app +
           ", whose services share one storage directory; set the quota on " + app->second->storage_app);
  }
  if (is_app) return {QuotaKind::app, text};
  if (is_share) return {QuotaKind::share, text};
  refuse(std::string(verb) + ": no app or share named " + describe_json(text));
}

// The backing directory a target's project id is set on.
std::vector<std::string> target_dir(const Manager::Impl& mgr, const QuotaTarget& t) {
  return t.kind == QuotaKind::app ? app_dir_components(t.name, mgr.config.apps_dir) : share_dir_components(t.name);
}

// The target's directory when it is a btrfs subvolume (mountmgr/provision.hpp makes them so).
struct Subvolume {
  common::UniqueFd fd;
  uint64_t id = 0;
};
std::optional<Subvolume> btrfs_subvolume(const Manager::Impl& mgr, const StorageRoot& root, const QuotaTarget& t) {
  // An app's limit within a share is never the share subvolume's qgroup (that counts every app).
  if (t.kind == QuotaKind::app_share || !common::on_btrfs(root.fd())) return std::nullopt;
  auto fd = common::open_beneath(root.fd(), target_dir(mgr, t), O_RDONLY);
  if (!fd) return std::nullopt;
  const auto id = common::subvolume_root_id(fd->get());
  if (!id) return std::nullopt;
  return Subvolume{std::move(*fd), *id};
}

// Sets (0: clears) a btrfs limit, turning qgroups on first if need be. Throws std::runtime_error.
void set_btrfs_limit(const Subvolume& sv, uint64_t bytes) {
  common::enable_qgroups(sv.fd.get());
  common::set_qgroup_limit(sv.fd.get(), sv.id, bytes);
}

std::string limit_text(uint64_t limit, bool bytes) {
  if (limit == 0) return "none";
  return bytes ? policy::format_size(limit) : std::to_string(limit);
}

// A new record for `key`, with the lowest project id no other record holds (a daemon-accounted
// record keeps one too: set again on a file system with project quotas, it is ready).
QuotaRecord& record_for(State& next, const std::string& key) {
  auto it = next.quotas.find(key);
  if (it != next.quotas.end()) return it->second;
  std::set<uint32_t> taken;
  for (const auto& [k, q] : next.quotas) taken.insert(q.project_id);
  const auto id = policy::next_project_id(taken);
  if (!id) refuse("quota set: no project id left to give");
  return next.quotas.emplace(key, QuotaRecord{*id, 0, 0}).first->second;
}

// The kernel's way: the project id on the tree, at set time, in this request (one walk; later
// files inherit it), and only then the limit: a limit must never count a tree half tagged.
// Returns how many files and directories got the id.
uint64_t set_project_quota(Manager::Impl& mgr, const QuotaOps& ops, const StorageRoot& root, const QuotaTarget& target,
                           const QuotaRecord& record) {
  const auto dir = target_dir(mgr, target);
  common::WalkFailure where;
  auto fd = common::open_beneath(root.fd(), dir, O_RDONLY, &where);
  if (!fd) failed("quota set: " + common::describe_walk_failure(root.path(), dir, where));
  uint64_t tagged = 0;
  try {
    tagged = ops.assign(fd->get(), record.project_id);
    // A share's trash too: what it keeps still takes room, and a restore is a rename back
    // into the share, which the kernel refuses (EXDEV) for an entry of another project.
    if (target.kind == QuotaKind::share && dir_exists(root, share_trash_components(target.name))) {
      auto trash = common::open_beneath(root.fd(), share_trash_components(target.name), O_RDONLY);
      if (!trash) throw std::runtime_error(root.display(share_trash_components(target.name)) + ": cannot open");
      tagged += ops.assign(trash->get(), record.project_id);
    }
    ops.limit(root.fd(), record.project_id, record.bytes, record.inodes);
  } catch (const std::exception& e) {
    failed("quota set: " + root.display(dir) + ": " + e.what());
  }
  return tagged;
}

// An undo's btrfs limit: opened again by path (the request's fds are gone by then); logged.
void undo_btrfs_limit(const std::string& path, const std::vector<std::string>& dir, uint64_t bytes, const std::string& what) {
  try {
    const StorageRoot r(path, /*create=*/false);
    auto fd = common::open_beneath(r.fd(), dir, O_RDONLY);
    const auto id = fd ? common::subvolume_root_id(fd->get()) : std::nullopt;
    if (!id) throw std::runtime_error(r.display(dir) + ": not a btrfs subvolume any more");
    common::set_qgroup_limit(fd->get(), *id, bytes);
  } catch (const std::exception& e) {
    common::log(common::LogLevel::error, what + e.what());
  }
}

Outcome quota_set(Manager::Impl& mgr, const Request& req) {
  const Args args(req, {"target", "bytes", "inodes"});
  const QuotaTarget target = target_arg(mgr, args, "quota set");
  const auto bytes = static_cast<uint64_t>(args.integer("bytes", 1, int64_t{1} << 60));
  const auto inodes = req.args.contains("inodes") ? static_cast<uint64_t>(args.integer("inodes", 0, INT64_MAX)) : 0;
  const QuotaOps ops = mgr.quota_ops();
  const StorageRoot root = mgr.open_root();
  const std::optional<Subvolume> subvolume = btrfs_subvolume(mgr, root, target);
  if (subvolume && inodes) {
    refuse("quota set: " + describe(target) + " is a btrfs subvolume, whose qgroup limits bytes only (btrfs counts "
           "no inodes); set it without an inode limit");
  }
  // Neither a subvolume nor project quotas here: portalfsd accounts the limit itself. It always
  // does an app's in a share: a project quota or a qgroup counts each file for the share alone.
  const bool on_btrfs = common::on_btrfs(root.fd());
  const bool by_daemon = target.kind == QuotaKind::app_share ||
                         (!subvolume && (on_btrfs || !ops.probe(root.fd()).empty()));

  State next = mgr.state;
  const std::string key = target.key();
  QuotaRecord& record = record_for(next, key);
  record.bytes = bytes;
  record.inodes = inodes;
  record.by_daemon = by_daemon;
  record.by_btrfs = subvolume.has_value();
  if (subvolume) {
    try {
      set_btrfs_limit(*subvolume, bytes);
    } catch (const std::exception& e) {
      failed("quota set: " + root.display(target_dir(mgr, target)) + ": " + e.what());
    }
  }
  const uint64_t tagged = by_daemon || subvolume ? 0 : set_project_quota(mgr, ops, root, target, record);

  Outcome out;
  const QuotaRecord before = mgr.state.quotas.contains(key) ? mgr.state.quotas.at(key) : QuotaRecord{};
  if (subvolume) {
    out.undo = [path = mgr.config.storage_root, dir = target_dir(mgr, target), before] {
      undo_btrfs_limit(path, dir, before.by_btrfs ? before.bytes : 0, "quota set: limit not taken back: ");
    };
  } else if (!by_daemon) {
    out.undo = [ops, path = mgr.config.storage_root, before, id = record.project_id] {
      try {
        const StorageRoot r(path, /*create=*/false);
        ops.limit(r.fd(), id, before.bytes, before.inodes);
      } catch (const std::exception& e) {
        common::log(common::LogLevel::error, std::string("quota set: limit not taken back: ") + e.what());
      }
    };
  }
  if (req.json) {
    out.output = nlohmann::json({{"target", key}, {"project_id", record.project_id}, {"bytes", bytes},
                                 {"inodes", inodes}, {"tagged", tagged},
                                 {"enforced_by", subvolume ? "btrfs" : by_daemon ? "daemon" : "kernel"}})
                     .dump(2) + "\n";
  } else if (subvolume) {
    out.output = "quota on " + describe(target) + ": " + policy::format_size(bytes) + " (btrfs qgroup 0/" +
                 std::to_string(subvolume->id) + ", enforced by the kernel)\n";
  } else if (by_daemon) {
    const std::string why = on_btrfs ? "its directory is not a btrfs subvolume (made before portalfs made them so)"
                                     : "the storage root's file system has no project quotas";
    out.output = "quota on " + describe(target) + ": " + policy::format_size(bytes) + ", " + limit_text(inodes, false) +
                 " inodes (accounted by portalfsd: " + why + "; its views are served without passthrough)\n";
  } else {
    out.output = "quota on " + describe(target) + ": " + policy::format_size(bytes) + ", " + limit_text(inodes, false) +
                 " inodes (project id " + std::to_string(record.project_id) + "; " + std::to_string(tagged) +
                 " files and directories given it now)\n";
  }
  out.next = std::move(next);
  return out;
}

Outcome quota_clear(Manager::Impl& mgr, const Request& req) {
  const Args args(req, {"target"});
  const QuotaTarget target = target_arg(mgr, args, "quota clear");
  const std::string key = target.key();
  const auto it = mgr.state.quotas.find(key);
  if (it == mgr.state.quotas.end() || (it->second.bytes == 0 && it->second.inodes == 0)) {
    refuse("quota clear: " + describe(target) + " has no quota");
  }
  const QuotaOps ops = mgr.quota_ops();
  const StorageRoot root = mgr.open_root();
  const QuotaRecord before = it->second;
  try {
    if (before.by_btrfs) {
      const auto subvolume = btrfs_subvolume(mgr, root, target);
      if (!subvolume) throw std::runtime_error(root.display(target_dir(mgr, target)) + ": not a btrfs subvolume any more");
      common::set_qgroup_limit(subvolume->fd.get(), subvolume->id, 0);
    } else if (!before.by_daemon) {
      ops.limit(root.fd(), before.project_id, 0, 0);
    }
  } catch (const std::exception& e) {
    failed(std::string("quota clear: ") + e.what());
  }
  State next = mgr.state;
  // The record stays, without limits: the files keep the id (see QuotaRecord).
  next.quotas[key].bytes = 0;
  next.quotas[key].inodes = 0;
  Outcome out(req.json ? nlohmann::json({{"target", key}, {"cleared", true}}).dump(2) + "\n"
                       : "quota on " + describe(target) + " cleared\n");
  if (before.by_btrfs) {
    out.undo = [path = mgr.config.storage_root, dir = target_dir(mgr, target), before] {
      undo_btrfs_limit(path, dir, before.bytes, "quota clear: limit not put back: ");
    };
  } else if (!before.by_daemon) out.undo = [ops, path = mgr.config.storage_root, before] {
    try {
      const StorageRoot r(path, /*create=*/false);
      ops.limit(r.fd(), before.project_id, before.bytes, before.inodes);
    } catch (const std::exception& e) {
      common::log(common::LogLevel::error, std::string("quota clear: limit not put back: ") + e.what());
    }
  };
  out.next = std::move(next);
  return out;
}

// What a limit has used: the kernel's count, or portalfsd's own. Throws std::runtime_error (one
// line) when there is none yet. `sync`: a btrfs qgroup counts what is committed, so `usage`
// syncs first; the worker's checks every second take the last commit's count (btrfs commits
// at least every 30 s) rather than force a commit a second.
QuotaUsage used_by(const Manager::Impl& mgr, const QuotaOps& ops, const StorageRoot& root, const std::string& key,
                   const QuotaRecord& q, bool sync) {
  if (q.by_btrfs) {
    const auto target = policy::parse_quota_key(key);
    const auto subvolume = target ? btrfs_subvolume(mgr, root, *target) : std::nullopt;
    if (!subvolume) throw std::runtime_error("its directory is not a btrfs subvolume any more");
    const common::QgroupUsage u = common::qgroup_usage(subvolume->fd.get(), subvolume->id, sync);
    return {u.referenced, 0, u.limit, 0};
  }
  if (!q.by_daemon) return ops.usage(root.fd(), q.project_id);
  std::optional<QuotaUsage> u = ops.accounted ? ops.accounted(key) : std::nullopt;
  if (!u) throw std::runtime_error("portalfsd is still counting it (its first walk; see portalctl status)");
  u->byte_limit = q.bytes;
  u->inode_limit = q.inodes;
  return *u;
}

nlohmann::json usage_json(const std::string& key, const QuotaRecord& q, const QuotaUsage& u) {
  const auto target = policy::parse_quota_key(key);
  return {{"target", key},
          {"kind", !target || target->kind == QuotaKind::app ? "app"
                   : target->kind == QuotaKind::share     ? "share"
                                                          : "app_share"},
          {"name", target ? target->name : key},
          {"project_id", q.project_id},
          {"bytes_used", u.bytes},
          {"bytes_limit", q.bytes},
          {"bytes_percent", policy::percent_of(u.bytes, q.bytes)},
          {"inodes_used", u.inodes},
          {"inodes_limit", q.inodes},
          {"inodes_percent", policy::percent_of(u.inodes, q.inodes)},
          {"enforced_by", q.by_btrfs ? "btrfs" : q.by_daemon ? "daemon" : "kernel"}};
}

std::string pad(std::string s, std::size_t width) {
  if (s.size() < width) s.append(width - s.size(), ' ');
  return s;
}

std::string human(uint64_t bytes) {
  const char* units[] = {"B", "K", "M", "G", "T", "P"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 5) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  if (u == 0) {
    std::snprintf(buf, sizeof buf, "%.0f%s", v, units[u]);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f%s", v, units[u]);
  }
  return buf;
}

Outcome usage(const Manager::Impl& mgr, const Request& req) {
  const Args args(req, {"target"});
  std::vector<std::string> keys;
  if (req.args.contains("target")) {
    const QuotaTarget target = target_arg(mgr, args, "usage");
    if (!mgr.state.quotas.contains(target.key())) {
      refuse("usage: " + describe(target) + " has no quota; set one with: portalctl quota set " +
             (target.kind == QuotaKind::app_share ? target.key() : target.name) + " SIZE");
    }
    keys.push_back(target.key());
  } else {
    for (const auto& [key, q] : mgr.state.quotas) keys.push_back(key);
  }
  nlohmann::json rows = nlohmann::json::array();
  if (!keys.empty()) {
    const QuotaOps ops = mgr.quota_ops();
    const StorageRoot root = mgr.open_root();
    for (const auto& key : keys) {
      const QuotaRecord& q = mgr.state.quotas.at(key);
      try {
        rows.push_back(usage_json(key, q, used_by(mgr, ops, root, key, q, /*sync=*/true)));
      } catch (const std::exception& e) {
        failed("usage: " + key + ": " + e.what());
      }
    }
  }
  if (req.json) return {rows.dump(2) + "\n"};
  std::string text = pad("TARGET", 24) + pad("USED", 10) + pad("LIMIT", 10) + pad("USE%", 6) + pad("INODES", 10) +
                     pad("ILIMIT", 10) + "IUSE%\n";
  for (const auto& r : rows) {
    const auto limit = r["bytes_limit"].get<uint64_t>();
    const auto ilimit = r["inodes_limit"].get<uint64_t>();
    text += pad(r["target"].get<std::string>(), 24) + pad(human(r["bytes_used"].get<uint64_t>()), 10) +
            pad(limit_text(limit, true), 10) +
            pad(limit ? std::to_string(r["bytes_percent"].get<int>()) + "%" : "-", 6) +
            // btrfs counts no inodes: "-", not a 0 that reads as a count.
            pad(r["enforced_by"] == "btrfs" ? "-" : std::to_string(r["inodes_used"].get<uint64_t>()), 10) +
            pad(limit_text(ilimit, false), 10) +
            (ilimit ? std::to_string(r["inodes_percent"].get<int>()) + "%" : "-") + "\n";
  }
  return {text};
}

}  // namespace

QuotaOps Manager::Impl::quota_ops() const {
  QuotaOps ops = config.quota_ops;
  if (!ops.probe) ops.probe = probe_project_quotas;
  if (!ops.assign) ops.assign = assign_project;
  if (!ops.limit) ops.limit = set_project_limits;
  if (!ops.usage) ops.usage = project_usage;
  return ops;
}

nlohmann::json Manager::Impl::quota_status() const {
  std::size_t limited = 0, by_daemon = 0, by_btrfs = 0;
  for (const auto& [key, q] : state.quotas) {
    limited += (q.bytes || q.inodes) ? 1 : 0;
    by_daemon += (q.bytes || q.inodes) && q.by_daemon ? 1 : 0;
    by_btrfs += (q.bytes || q.inodes) && q.by_btrfs ? 1 : 0;
  }
  nlohmann::json out = {{"limits", limited}, {"by_daemon", by_daemon}, {"by_btrfs", by_btrfs}};
  if (!store_offline.empty()) {
    out["mode"] = "unknown";
    out["problem"] = "storage root offline";
    return out;
  }
  try {
    const StorageRoot root(config.storage_root, /*create=*/false);
    if (common::on_btrfs(root.fd())) {
      out["mode"] = "btrfs";  // qgroups of the subvolumes; a limit on a plain directory is the daemon's
      return out;
    }
    const std::string why = quota_ops().probe(root.fd());
    // Without project quotas, portalfsd accounts the limits itself.
    out["mode"] = why.empty() ? "project" : "daemon";
    if (!why.empty()) out["problem"] = why;
  } catch (const std::exception& e) {
    out["mode"] = "unknown";
    out["problem"] = e.what();
  }
  return out;
}

std::string quota_status_line(const nlohmann::json& q) {
  const std::string mode = q.value("mode", "unknown");
  const std::string limits = std::to_string(q.value("limits", 0)) + " set";
  if (mode == "btrfs") {
    std::string line = "quota: btrfs qgroups of the apps' and shares' subvolumes, enforced by the kernel (" + limits + ")";
    if (q.value("by_daemon", 0) > 0) {
      line += "; " + std::to_string(q.value("by_daemon", 0)) +
              " accounted by portalfsd (directories made before they were subvolumes; served without passthrough)";
    }
    return line;
  }
  if (mode == "project") {
    std::string line = "quota: project quotas of the storage root's file system, enforced by the kernel (" + limits + ")";
    // Limits set before the file system had project quotas stay the daemon's until set again.
    if (q.value("by_daemon", 0) > 0) line += "; " + std::to_string(q.value("by_daemon", 0)) + " accounted by portalfsd";
    return line;
  }
  // Limits recorded on a file system that lost its project quotas (mounted without prjquota):
  // the kernel enforces none of them, which the admin must hear of.
  const int by_kernel = q.value("limits", 0) - q.value("by_daemon", 0);
  if (mode == "daemon" && by_kernel > 0) {
    return "quota: " + std::to_string(by_kernel) + " of " + limits + " NOT ENFORCED (project quotas of the kernel; " +
           q.value("problem", "") + ")";
  }
  if (mode == "daemon") {
    return "quota: accounted by portalfsd, its limited views served without passthrough (" + limits + "; " +
           q.value("problem", "") + ")";
  }
  return "quota: unknown (" + q.value("problem", "") + ")";
}

void Manager::Impl::check_quota_levels() {
  std::map<std::string, QuotaRecord> quotas;
  {
    std::lock_guard lock(mutex);
    if (!store_offline.empty()) return;
    quotas = state.quotas;
  }
  std::erase_if(quota_levels, [&](const auto& l) { return !quotas.contains(l.first); });
  std::erase_if(quotas, [](const auto& q) { return q.second.bytes == 0 && q.second.inodes == 0; });
  if (quotas.empty()) return;
  try {
    const StorageRoot root = open_root();
    const QuotaOps ops = quota_ops();
    for (const auto& [key, q] : quotas) {
      if (q.by_daemon && !(ops.accounted && ops.accounted(key))) continue;  // still counting
      const QuotaUsage u = used_by(*this, ops, root, key, q, /*sync=*/false);
      const int level = policy::warning_level(u.bytes, q.bytes, u.inodes, q.inodes);
      int& last = quota_levels[key];
      if (level > last) {
        const std::string detail = std::to_string(level) + "% reached: " + std::to_string(u.bytes) + " of " +
                                   limit_text(q.bytes, true) + " bytes (" + std::to_string(policy::percent_of(u.bytes, q.bytes)) +
                                   "%), " + std::to_string(u.inodes) + " of " + limit_text(q.inodes, false) + " inodes";
        common::log(level >= 100 ? common::LogLevel::error : common::LogLevel::warn, "quota of " + key + ": " + detail);
        if (audit) {
          const auto target = policy::parse_quota_key(key);
          common::AuditRecord r;
          r.app = !target ? "" : target->kind == QuotaKind::app ? target->name : target->app;
          r.view = target && target->kind != QuotaKind::app ? "shared/" + target->name : "";
          r.op = "quota";
          r.result = std::to_string(level) + "%";
          r.detail = detail;
          audit->post(std::move(r));
        }
      }
      last = level;
    }
  } catch (const std::exception& e) {
    common::log(common::LogLevel::error, std::string("quota: usage not checked: ") + e.what());
  }
}

// The args of each verb; a field not marked optional is required.
std::span<const Verb> quota_verbs() {
  static constexpr Verb kVerbs[] = {
      {"quota.set", quota_set},      // {target: app|share|apps/APP|shared/SHARE, bytes, inodes?}
      {"quota.clear", quota_clear},  // {target}
      {"usage", usage},              // {target?}
  };
  return kVerbs;
}

}  // namespace portalfs::mountmgr
