// SPDX-License-Identifier: MIT
#include "mountmgr/audit_changes.hpp"

#include <map>
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
std::map<ViewKey, const policy::ViewSpec*> by_key(const policy::ViewSpecs& views) {
  std::map<ViewKey, const policy::ViewSpec*> out;
  for (const auto& v : views) out[{v.app, std::string(policy::to_string(v.kind)) + "/" + v.dir_name}] = &v;
  return out;
}

void app_changes(const State& before, const State& after, std::vector<AuditRecord>& out) {
  for (const auto& [app, rec] : after.apps) {
    auto old = before.apps.find(app);
    if (old == before.apps.end()) {
      out.push_back(record(app, "app.install", rec.version.empty() ? "" : "version " + rec.version));
    } else if (old->second.grants != rec.grants || old->second.version != rec.version ||
               old->second.data_dirs != rec.data_dirs) {
      out.push_back(record(app, "app.upgrade", rec.version.empty() ? "" : "version " + rec.version));
    }
  }
  for (const auto& [app, rec] : before.apps) {
    if (!after.apps.count(app)) out.push_back(record(app, "app.remove"));
  }
}

// A grant as its record's detail names it: the mode, and whether reads are recorded.
std::string grant_text(const policy::ViewSpec& spec) {
  return std::string(policy::to_string(spec.access)) + (spec.audit_reads ? " +audit-reads" : "");
}

void grant_changes(const policy::ViewSpecs& views_before, const policy::ViewSpecs& views_after,
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
  grant_changes(views_before, views_after, out);
  share_changes(before, after, out);
  return out;
}

}  // namespace portalfs::mountmgr
