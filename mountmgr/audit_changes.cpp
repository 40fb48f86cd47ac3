// SPDX-License-Identifier: MIT
#include "mountmgr/audit_changes.hpp"

#include <algorithm>
#include <iterator>
#include <map>
#include <span>
#include <tuple>

namespace portalfs::mountmgr {

namespace {

using common::AuditRecord;

AuditRecord record(const std::string& app, const std::string& op, std::string detail = {}) {
  AuditRecord r;
  r.app = app;
  r.op = op;
  r.result = "ok";
  r.detail = std::move(detail);
  return r;
}

// A view as its records name it ("shared/media", as served below apps/<app>/), by app.
using ViewKey = std::pair<std::string, std::string>;
std::map<ViewKey, const policy::ViewSpec*> by_key(std::span<const policy::ViewSpec> views) {
  std::map<ViewKey, const policy::ViewSpec*> out;
  for (const auto& v : views) out[{v.app, std::string(policy::to_string(v.kind)) + "/" + v.dir_name}] = &v;
  return out;
}

// Both maps are walked side by side, once; a record the change did not touch is the same
// object in both (AppRef) and costs one pointer compare.
void app_changes(const State& before, const State& after, std::vector<AuditRecord>& out) {
  const auto installed = [&](const std::string& app, const AppRecord& rec, const char* op) {
    out.push_back(record(app, op, rec.version.empty() ? "" : "version " + rec.version));
  };
  std::vector<AuditRecord> removed;  // after the others, as before
  walk_apps(
      before, after, [&](const std::string& app, const AppRef&) { removed.push_back(record(app, "app.remove")); },
      [&](const std::string& app, const AppRef& rec) { installed(app, *rec, "app.install"); },
      [&](const std::string& app, const AppRef& was, const AppRef& now) {
        if (!was.same_object(now) &&
            (was->grants != now->grants || was->version != now->version || was->data_dirs != now->data_dirs)) {
          installed(app, *now, "app.upgrade");
        }
      });
  out.insert(out.end(), std::make_move_iterator(removed.begin()), std::make_move_iterator(removed.end()));
}

// A grant as its record's detail names it: the mode, and whether reads are recorded.
std::string grant_text(const policy::ViewSpec& spec) {
  return std::string(policy::to_string(spec.access)) + (spec.audit_reads ? " +audit-reads" : "");
}

// The grant records of one app's views (or of every app's, when the views are not in app order).
void grant_changes(std::span<const policy::ViewSpec> views_before, std::span<const policy::ViewSpec> views_after,
                   std::vector<AuditRecord>& out) {
  const auto old_views = by_key(views_before);
  const auto new_views = by_key(views_after);
  for (const auto& [key, spec] : new_views) {
    auto old = old_views.find(key);
    const std::string access = grant_text(*spec);
    if (old == old_views.end()) {
      AuditRecord r = record(key.first, "grant", access);
      r.view = key.second;
      out.push_back(std::move(r));
    } else if (old->second->access != spec->access || old->second->sidecars != spec->sidecars ||
               old->second->audit_reads != spec->audit_reads) {
      AuditRecord r = record(key.first, "grant", grant_text(*old->second) + " -> " + access);
      r.view = key.second;
      out.push_back(std::move(r));
    }
  }
  for (const auto& [key, spec] : old_views) {
    if (new_views.count(key)) continue;
    AuditRecord r = record(key.first, "revoke", policy::to_string(spec->access));
    r.view = key.second;
    out.push_back(std::move(r));
  }
}

bool same_grant(const policy::ViewSpec& a, const policy::ViewSpec& b) {
  return a.kind == b.kind && a.dir_name == b.dir_name && a.access == b.access && a.sidecars == b.sidecars &&
         a.audit_reads == b.audit_reads;
}

bool in_app_order(const policy::ViewSpecs& views) {
  return std::is_sorted(views.begin(), views.end(),
                        [](const policy::ViewSpec& a, const policy::ViewSpec& b) { return a.app < b.app; });
}

// The views of the app that starts at `i`.
std::span<const policy::ViewSpec> app_run(const policy::ViewSpecs& views, size_t i) {
  size_t end = i;
  while (end < views.size() && views[end].app == views[i].app) ++end;
  return {views.data() + i, end - i};
}

// Views come in app order (build_views walks the state's apps): the two lists are walked side
// by side, app by app, and an app whose views are all as they were costs no map (a grant at
// 1,000 apps compared 4,000 views through two maps of them).
void grant_changes_by_app(const policy::ViewSpecs& before, const policy::ViewSpecs& after,
                          std::vector<AuditRecord>& out) {
  size_t i = 0, j = 0;
  while (i < before.size() || j < after.size()) {
    const bool take_before = j == after.size() || (i < before.size() && before[i].app <= after[j].app);
    const bool take_after = i == before.size() || (j < after.size() && after[j].app <= before[i].app);
    auto old_run = take_before ? app_run(before, i) : std::span<const policy::ViewSpec>{};
    auto new_run = take_after ? app_run(after, j) : std::span<const policy::ViewSpec>{};
    if (!std::equal(old_run.begin(), old_run.end(), new_run.begin(), new_run.end(), same_grant)) {
      grant_changes(old_run, new_run, out);
    }
    i += old_run.size();
    j += new_run.size();
  }
}

void share_changes(const State& before, const State& after, std::vector<AuditRecord>& out) {
  // Share-level: no app's, so in _platform.jsonl; the share is the record's view.
  for (const auto& [share, owner] : after.shares) {
    if (before.shares.count(share)) continue;
    AuditRecord r = record("", "share.create", "owner " + format_owner(owner));
    r.view = "shared/" + share;
    out.push_back(std::move(r));
  }
  for (const auto& [share, owner] : before.shares) {
    if (after.shares.count(share)) continue;
    AuditRecord r = record("", "share.remove");
    r.view = "shared/" + share;
    out.push_back(std::move(r));
  }
}

}  // namespace

std::vector<AuditRecord> state_changes(const State& before, const State& after,
                                       const policy::ViewSpecs& views_before,
                                       const policy::ViewSpecs& views_after) {
  std::vector<AuditRecord> out;
  app_changes(before, after, out);
  if (in_app_order(views_before) && in_app_order(views_after)) {
    grant_changes_by_app(views_before, views_after, out);
  } else {
    grant_changes(views_before, views_after, out);
  }
  share_changes(before, after, out);
  return out;
}

}  // namespace portalfs::mountmgr
