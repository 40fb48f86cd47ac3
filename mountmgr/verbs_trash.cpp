// SPDX-License-Identifier: MIT
// trash.list, trash.restore, trash.purge: the shares' trashes (policy/trash.hpp,
// mountmgr/share_trash.hpp), and the daemon's purge of expired entries.

#include <algorithm>
#include <cstdint>
#include <ctime>

#include "common/log.hpp"
#include "mountmgr/manager_impl.hpp"
#include "mountmgr/share_trash.hpp"

namespace portalfs::mountmgr {
namespace {

std::string utc_time(int64_t unix_seconds) {
  const std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::vector<std::string> share_names(const State& state) {
  std::vector<std::string> out;
  for (const auto& [name, owner] : state.shares) out.push_back(name);
  return out;
}

// The entries the args select: share?, app?, older_than? (seconds).
std::vector<TrashItem> selected(const Manager::Impl& mgr, const Request& req, const Args& args) {
  std::vector<std::string> shares = share_names(mgr.state);
  if (auto share = args.opt_str("share")) {
    require_share(mgr.state, *share);
    shares = {*share};
  }
  const auto app = args.opt_str("app");
  const int64_t older_than = req.args.contains("older_than") ? args.integer("older_than", 0, INT64_MAX / 2) : 0;
  const int64_t now = ::time(nullptr);
  std::vector<TrashItem> items = list_share_trash(mgr.open_root(), shares);
  std::erase_if(items, [&](const TrashItem& item) {
    if (app && (!item.record || item.record->app != *app)) return true;
    return now - item.deleted_at < older_than;
  });
  return items;
}

nlohmann::json item_json(const TrashItem& item) {
  nlohmann::json out = {{"id", item.id}, {"share", item.share}, {"deleted_at", utc_time(item.deleted_at)}};
  if (item.record) {
    out["path"] = item.record->path;
    out["app"] = item.record->app;
    out["view"] = item.record->view;
    out["kind"] = item.record->kind;
  }
  if (!item.problem.empty()) out["problem"] = item.problem;
  return out;
}

// "ID SHARE TIME APP KIND PATH", the path last (it may hold spaces) and escaped to one line.
std::string item_line(const TrashItem& item) {
  std::string line = item.id + " " + item.share + " " + utc_time(item.deleted_at) + " ";
  line += item.record ? item.record->app + " " + item.record->kind + " " + common::escape_for_message(item.record->path)
                      : "- - -";
  if (!item.problem.empty()) line += " (" + item.problem + ")";
  return line + "\n";
}

Outcome trash_list(const Manager::Impl& mgr, const Request& req) {
  const Args args(req, {"share", "app"});
  const auto items = selected(mgr, req, args);
  if (req.json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& item : items) out.push_back(item_json(item));
    return {out.dump(2) + "\n"};
  }
  std::string out;
  for (const auto& item : items) out += item_line(item);
  return {out};
}

Outcome trash_restore(Manager::Impl& mgr, const Request& req) {
  const Args args(req, {"id", "to"});
  const std::string id = args.str("id");
  if (!policy::valid_trash_id(id)) args.bad("id", "expected an id like 20261206-223800-1a2b3c4d (portalctl trash list), got " + describe_json(id));
  const auto to = args.opt_str("to");
  const StorageRoot root = mgr.open_root();
  const auto items = list_share_trash(root, share_names(mgr.state));
  const auto it = std::find_if(items.begin(), items.end(), [&](const TrashItem& i) { return i.id == id; });
  if (it == items.end()) refuse("trash restore: no entry " + id + " in any share's trash; portalctl trash list shows them");
  if (!it->record && !to) refuse("trash restore: entry " + id + " has no readable record (" + it->problem + "); say where with --to PATH");
  const std::string path = to.value_or(it->record ? it->record->path : "");
  restore_share_trash(root, *it, path);
  Outcome out;
  out.output = req.json ? nlohmann::json({{"id", id}, {"share", it->share}, {"path", path}}).dump(2) + "\n"
                        : "restored " + id + " to share " + it->share + ": " + common::escape_for_message(path) + "\n";
  return out;
}

Outcome trash_purge(Manager::Impl& mgr, const Request& req) {
  const Args args(req, {"share", "app", "older_than"});
  const auto items = selected(mgr, req, args);
  const std::size_t purged = purge_share_trash(mgr.open_root(), items);
  if (purged > 0) {
    mgr.start_worker();  // a request runs after portalfsd forked: the worker may start now
    mgr.wake_worker();
  }
  return {req.json ? nlohmann::json({{"purged", purged}}).dump(2) + "\n"
                   : "purged " + std::to_string(purged) + (purged == 1 ? " entry\n" : " entries\n")};
}

}  // namespace

void Manager::Impl::purge_expired_trash() {
  const auto now_steady = std::chrono::steady_clock::now();
  if (last_trash_purge && now_steady - *last_trash_purge < config.trash_purge_interval) return;
  last_trash_purge = now_steady;
  std::map<std::string, int64_t> retention;
  {
    std::lock_guard lock(mutex);
    if (!store_offline.empty()) return;  // the next round, once the store is back
    retention = state.share_trash;
  }
  if (retention.empty()) return;
  try {
    const StorageRoot root = open_root();
    std::vector<std::string> shares;
    for (const auto& [share, seconds] : retention) shares.push_back(share);
    const int64_t now = ::time(nullptr);
    auto items = list_share_trash(root, shares);
    std::erase_if(items, [&](const TrashItem& item) { return now - item.deleted_at < retention.at(item.share); });
    if (items.empty()) return;
    const std::size_t purged = purge_share_trash(root, items);
    common::log(common::LogLevel::info, "share trash: purged " + std::to_string(purged) + " expired entries");
    wake_worker();
  } catch (const std::exception& e) {
    common::log(common::LogLevel::error, std::string("share trash: expired entries not purged: ") + e.what());
  }
}

// The args of each verb; a field not marked optional is required.
std::span<const Verb> trash_verbs() {
  static constexpr Verb kVerbs[] = {
      {"trash.list", trash_list},        // {share?, app?}
      {"trash.restore", trash_restore},  // {id, to?: path relative to the share}
      {"trash.purge", trash_purge},      // {share?, app?, older_than?: seconds}
  };
  return kVerbs;
}

}  // namespace portalfs::mountmgr
