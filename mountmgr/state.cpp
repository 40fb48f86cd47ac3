// SPDX-License-Identifier: MIT
#include "mountmgr/state.hpp"

#include <charconv>
#include <set>
#include <stdexcept>

#include "mountmgr/json_reader.hpp"
#include "mountmgr/paths.hpp"
#include "policy/compose.hpp"
#include "policy/manifest.hpp"
#include "policy/quota.hpp"
#include "policy/trash.hpp"

namespace portalfs::mountmgr {
namespace {

using nlohmann::json;

json grant_to_json(const policy::Grant& grant) {
  json out = {{"kind", policy::to_string(grant.kind)},
              {"name", grant.name},
              {"container_path", grant.container_path},
              {"access", policy::to_string(grant.access)}};
  if (grant.owner) out["owner"] = format_owner(*grant.owner);
  if (!grant.sidecars.empty()) out["sidecars"] = grant.sidecars;
  if (grant.audit_reads) out["audit_reads"] = true;  // absent: false, as in older state files
  return out;
}

json ranges_to_json(const std::vector<policy::IdRange>& ranges) {
  json out = json::array();
  for (const auto& r : ranges) out.push_back(format_range(r));
  return out;
}

// ---- reading ----------------------------------------------------------------------------------

/// Fails `r` with what `e` (from a check of its value) says was expected, and the value.
[[noreturn]] void fail_with(const JsonReader& r, const std::invalid_argument& e) {
  r.fail(std::string(e.what()) + ", got " + describe_json(r.json()));
}

policy::Owner read_owner(const JsonReader& r) {
  const std::string text = r.as_string();
  try {
    return parse_owner(text);
  } catch (const std::invalid_argument& e) {
    fail_with(r, e);
  }
}

policy::Grant read_grant(const JsonReader& r) {
  r.expect_object({"kind", "name", "container_path", "access", "owner", "sidecars", "audit_reads"});
  policy::Grant grant;
  const JsonReader kind = r.member("kind", R"("data", "shared" or "host")");
  const std::string kind_text = kind.as_string();
  if (kind_text == "data") {
    grant.kind = policy::GrantKind::data;
  } else if (kind_text == "shared") {
    grant.kind = policy::GrantKind::shared;
  } else if (kind_text == "host") {
    grant.kind = policy::GrantKind::host;
  } else {
    kind.fail(R"(expected "data", "shared" or "host", got )" + describe_json(kind.json()));
  }

  const JsonReader name = r.member("name", "a string");
  grant.name = name.as_string();
  try {
    switch (grant.kind) {
      case policy::GrantKind::data: check_data_dir_name(grant.name); break;
      case policy::GrantKind::shared:  // policy's checks return what was expected
        if (auto e = policy::check_share_name(grant.name)) throw std::invalid_argument(*e);
        break;
      case policy::GrantKind::host: check_host_path(grant.name); break;
    }
  } catch (const std::invalid_argument& e) {
    fail_with(name, e);
  }

  const JsonReader path = r.member("container_path", "a string");
  grant.container_path = path.as_string();
  if (auto e = policy::check_container_path(grant.container_path)) {
    path.fail(*e + ", got " + describe_json(path.json()));
  }

  const JsonReader access = r.member("access", "a grant mode (" + policy::access_names() + ")");
  const auto mode = policy::parse_access(access.as_string(), false);
  if (!mode) access.fail("expected one of " + policy::access_names() + ", got " + describe_json(access.json()));
  grant.access = *mode;
  if (auto owner = r.opt_member("owner")) grant.owner = read_owner(*owner);
  if (auto sidecars = r.opt_member("sidecars")) {
    sidecars->expect_array();
    for (std::size_t i = 0; i < sidecars->size(); ++i) {
      const JsonReader p = sidecars->at(i);
      const std::string pattern = p.as_string();
      if (auto e = policy::check_sidecar_pattern(pattern)) p.fail(*e + ", got " + describe_json(p.json()));
      grant.sidecars.push_back(pattern);
    }
    if (grant.access != policy::Access::read) r.fail("expected sidecars only in a read grant");
  }
  grant.audit_reads = r.opt_boolean("audit_reads").value_or(false);
  return grant;
}

std::vector<policy::Grant> read_grants(const JsonReader& r) {
  r.expect_array();
  std::vector<policy::Grant> out;
  for (std::size_t i = 0; i < r.size(); ++i) out.push_back(read_grant(r.at(i)));
  return out;
}

std::vector<policy::IdRange> read_ranges(const JsonReader& r) {
  r.expect_array();
  std::vector<policy::IdRange> out;
  for (std::size_t i = 0; i < r.size(); ++i) {
    const JsonReader item = r.at(i);
    std::string error;
    auto range = policy::IdMap::parse_range(item.as_string(), &error);
    if (!range) item.fail("expected \"inside:outside:count\" (" + error + "), got " + describe_json(item.json()));
    out.push_back(*range);
  }
  std::string error;
  if (!policy::IdMap::make(out, &error)) r.fail(error);
  return out;
}

std::vector<DataDirRecord> read_data_dirs(const JsonReader& r) {
  r.expect_array();
  std::vector<DataDirRecord> out;
  for (std::size_t i = 0; i < r.size(); ++i) {
    const JsonReader item = r.at(i);
    item.expect_object({"name", "created_by_version", "removed"});
    DataDirRecord rec;
    const JsonReader name = item.member("name", "a string");
    rec.name = name.as_string();
    try {
      check_data_dir_name(rec.name);
    } catch (const std::invalid_argument& e) {
      fail_with(name, e);
    }
    rec.created_by_version = item.string("created_by_version");
    rec.removed = item.boolean("removed");
    out.push_back(std::move(rec));
  }
  return out;
}

std::vector<StorageMount> read_storage_mounts(const JsonReader& r) {
  r.expect_array();
  std::vector<StorageMount> out;
  for (std::size_t i = 0; i < r.size(); ++i) {
    const JsonReader item = r.at(i);
    item.expect_object({"host_path", "container_path", "read_only"});
    StorageMount m;
    const JsonReader host = item.member("host_path", "a string");
    m.host_path = host.as_string();
    try {
      check_host_path(m.host_path);
    } catch (const std::invalid_argument& e) {
      fail_with(host, e);
    }
    const JsonReader ctr = item.member("container_path", "a string");
    m.container_path = ctr.as_string();
    if (auto e = policy::check_container_path(m.container_path)) {
      ctr.fail(*e + ", got " + describe_json(ctr.json()));
    }
    m.read_only = item.boolean("read_only");
    out.push_back(std::move(m));
  }
  return out;
}

std::vector<std::string> read_share_names(const JsonReader& r) {
  r.expect_array();
  std::vector<std::string> out;
  for (std::size_t i = 0; i < r.size(); ++i) {
    const JsonReader item = r.at(i);
    out.push_back(item.as_string());
    if (auto e = policy::check_share_name(out.back())) item.fail(*e + ", got " + describe_json(item.json()));
  }
  return out;
}

AppRecord read_app(const JsonReader& r) {
  r.expect_object({"installed_as", "version", "uid_maps", "gid_maps", "grants", "admin_grants",
                   "revoked", "data_dirs", "storage_mounts", "storage_app", "share_access"});
  AppRecord app;
  app.installed_as = r.opt_string("installed_as").value_or("");
  app.version = r.string("version");
  app.uid_maps = read_ranges(r.member("uid_maps", "an array"));
  app.gid_maps = read_ranges(r.member("gid_maps", "an array"));
  app.grants = read_grants(r.member("grants", "an array"));
  app.admin_grants = read_grants(r.member("admin_grants", "an array"));
  app.revoked = read_share_names(r.member("revoked", "an array"));
  app.data_dirs = read_data_dirs(r.member("data_dirs", "an array"));
  app.storage_mounts = read_storage_mounts(r.member("storage_mounts", "an array"));
  if (auto storage_app = r.opt_member("storage_app")) {
    app.storage_app = storage_app->as_string();
    if (auto e = policy::check_app_name(app.storage_app)) {
      storage_app->fail(*e + ", got " + describe_json(storage_app->json()));
    }
  }
  if (auto rules = r.opt_member("share_access")) {
    rules->expect_array();
    std::map<std::string, policy::Access> parsed;
    for (std::size_t i = 0; i < rules->size(); ++i) {
      const JsonReader item = rules->at(i);
      app.share_access.push_back(item.as_string());
      if (auto e = policy::parse_share_access(app.share_access.back(), parsed)) {
        item.fail(*e + ", got " + describe_json(item.json()));
      }
    }
  }
  return app;
}

/// "DEV:INO" of a mount namespace into `out`; false when the text is not that.
bool parse_mnt_ns(std::string_view text, ProcessIdentity& out) {
  const auto colon = text.find(':');
  if (colon == std::string_view::npos) return false;
  auto parse = [](std::string_view part, uint64_t& v) {
    auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), v);
    return !part.empty() && ec == std::errc() && end == part.data() + part.size();
  };
  return parse(text.substr(0, colon), out.mnt_ns_dev) && parse(text.substr(colon + 1), out.mnt_ns_ino);
}

Attachment read_attachment(const JsonReader& r) {
  r.expect_object({"app", "pid", "binds", "start_time", "mnt_ns", "boot_id"});
  Attachment a;
  a.app = r.string("app");
  a.pid = static_cast<int>(r.integer("pid", 1, INT32_MAX));
  const JsonReader binds = r.member("binds", "an array");
  binds.expect_array();
  for (std::size_t i = 0; i < binds.size(); ++i) {
    const JsonReader b = binds.at(i);
    b.expect_object({"source", "target", "read_only"});
    a.binds.push_back({b.string("source"), b.string("target"), b.boolean("read_only")});
  }
  // All or none: none is a record from before identities were kept (loaded, never
  // re-attached); some alone are a damaged file.
  if (!r.has("start_time") && !r.has("mnt_ns") && !r.has("boot_id")) return a;
  ProcessIdentity process;
  process.pid = a.pid;
  process.start_time = static_cast<uint64_t>(r.integer("start_time", 0, INT64_MAX));
  const JsonReader ns = r.member("mnt_ns", "\"DEV:INO\"");
  if (!parse_mnt_ns(ns.as_string(), process)) {
    ns.fail("expected \"DEV:INO\" (two unsigned integers), got " + describe_json(ns.json()));
  }
  process.boot_id = r.string("boot_id");
  a.process = process;
  return a;
}

json quotas_to_json(const std::map<std::string, QuotaRecord>& quotas) {
  json out = json::object();
  for (const auto& [key, q] : quotas) {
    out[key] = {{"project_id", q.project_id}, {"bytes", q.bytes}, {"inodes", q.inodes}};
    if (q.by_daemon) out[key]["enforced_by"] = "daemon";
    if (q.by_btrfs) out[key]["enforced_by"] = "btrfs";
  }
  return out;
}

std::map<std::string, QuotaRecord> read_quotas(const JsonReader& r) {
  if (!r.json().is_object()) r.fail("expected an object, got " + describe_json(r.json()));
  std::map<std::string, QuotaRecord> out;
  std::set<uint32_t> ids;
  for (const auto& item : r.json().items()) {
    const JsonReader q(item.value(), r.pointer() + "/" + pointer_token(item.key()));
    const auto target = policy::parse_quota_key(item.key());
    std::optional<std::string> bad_name =
        !target ? std::optional<std::string>("not apps/<app>, shared/<share> or <app>:<share>")
        : target->kind == policy::QuotaKind::app ? policy::check_app_name(target->name)
                                                 : policy::check_share_name(target->name);
    if (!bad_name && target->kind == policy::QuotaKind::app_share) bad_name = policy::check_app_name(target->app);
    if (bad_name) q.fail("key: " + *bad_name + ", got " + describe_json(item.key()));
    q.expect_object({"project_id", "bytes", "inodes", "enforced_by"});
    QuotaRecord record;
    record.project_id = static_cast<uint32_t>(q.integer("project_id", policy::kFirstProjectId, policy::kLastProjectId));
    record.bytes = static_cast<uint64_t>(q.integer("bytes", 0, INT64_MAX));
    record.inodes = static_cast<uint64_t>(q.integer("inodes", 0, INT64_MAX));
    if (auto by = q.opt_member("enforced_by")) {
      if (by->json() != "daemon" && by->json() != "btrfs") {
        by->fail("expected \"daemon\" or \"btrfs\" (or no field: project quotas), got " + describe_json(by->json()));
      }
      record.by_daemon = by->json() == "daemon";
      record.by_btrfs = by->json() == "btrfs";
    }
    if (!ids.insert(record.project_id).second) {
      q.member("project_id", "").fail("project id " + std::to_string(record.project_id) + " recorded twice");
    }
    out[item.key()] = record;
  }
  return out;
}

// "shares": each share's owner, and its trash's retention if it has one.
void read_shares(const JsonReader& shares, State& state) {
  if (!shares.json().is_object()) shares.fail("expected an object, got " + describe_json(shares.json()));
  for (const auto& item : shares.json().items()) {
    const JsonReader share(item.value(), shares.pointer() + "/" + pointer_token(item.key()));
    if (auto e = policy::check_share_name(item.key())) share.fail("key: " + *e);
    share.expect_object({"owner", "trash"});
    state.shares[item.key()] = read_owner(share.member("owner", "\"UID:GID\""));
    if (auto trash = share.opt_member("trash")) {
      std::string expected;
      const auto seconds = policy::parse_retention(trash->as_string(), &expected);
      if (!seconds) trash->fail(expected + ", got " + describe_json(trash->json()));
      if (*seconds == 0) trash->fail("expected a retention (a share without a trash has no \"trash\"), got \"off\"");
      state.share_trash[item.key()] = *seconds;
    }
  }
}

// "removals": only what a purge or a prune deletes, an app's directory or one below it.
std::vector<std::string> read_removals(const JsonReader& removals) {
  removals.expect_array();
  std::vector<std::string> out;
  for (std::size_t i = 0; i < removals.size(); ++i) {
    const JsonReader item = removals.at(i);
    std::string path = item.as_string();
    bool valid = path.starts_with("apps/");
    try {
      check_data_dir_name(path);
    } catch (const std::invalid_argument&) {
      valid = false;
    }
    if (!valid) item.fail(R"(expected "apps/<app>[/<data dir>]", got )" + describe_json(item.json()));
    out.push_back(std::move(path));
  }
  return out;
}

// An absolute, normalised host path, or the member named `field` fails.
void expect_host_path(const JsonReader& item, const char* field, const std::string& path) {
  if (!path.starts_with('/') || normalise_host_path(path) != path) {
    item.member(field, "").fail("expected an absolute, normalised path, got " + describe_json(path));
  }
}

// Records keyed by "path" (stores, mounts): a path recorded twice fails.
template <class Record>
void expect_new_path(const JsonReader& item, const std::vector<Record>& seen, const std::string& path) {
  for (const auto& other : seen) {
    if (other.path == path) item.member("path", "").fail("recorded twice: " + describe_json(path));
  }
}

std::vector<StoreRecord> read_stores(const JsonReader& stores) {
  stores.expect_array();
  std::vector<StoreRecord> out;
  for (std::size_t i = 0; i < stores.size(); ++i) {
    const JsonReader item = stores.at(i);
    item.expect_object({"path", "id", "fs_type", "source"});
    StoreRecord store{item.string("path"), item.string("id"), item.string("fs_type"), item.string("source")};
    expect_host_path(item, "path", store.path);
    if (!valid_store_id(store.id)) {
      item.member("id", "").fail("expected 32 lowercase hex digits, got " + describe_json(store.id));
    }
    expect_new_path(item, out, store.path);
    out.push_back(std::move(store));
  }
  return out;
}

// "mounts": the mounts that shares and storage:mount paths live on, recorded when first seen
// (fsid is optional: older states lack it).
std::vector<BackingMount> read_mounts(const JsonReader& mounts) {
  mounts.expect_array();
  std::vector<BackingMount> out;
  for (std::size_t i = 0; i < mounts.size(); ++i) {
    const JsonReader item = mounts.at(i);
    item.expect_object({"path", "mount_point", "fs_type", "source", "fsid"});
    BackingMount m{item.string("path"), item.string("mount_point"), item.string("fs_type"), item.string("source"),
                   item.has("fsid") ? item.string("fsid") : std::string()};
    expect_host_path(item, "path", m.path);
    expect_host_path(item, "mount_point", m.mount_point);
    expect_new_path(item, out, m.path);
    out.push_back(std::move(m));
  }
  return out;
}

}  // namespace

State fresh_state() {
  State state;
  state.shares["own_documents"] = policy::Owner{0, 0};
  state.shares["own_media"] = policy::Owner{0, 0};
  return state;
}

std::string format_owner(const policy::Owner& owner) {
  return std::to_string(owner.uid) + ":" + std::to_string(owner.gid);
}

policy::Owner parse_owner(std::string_view text) {
  constexpr auto kExpected = "expected UID:GID (two integers from 0 to 4294967294)";
  const auto colon = text.find(':');
  if (colon == std::string_view::npos) throw std::invalid_argument(kExpected);
  auto parse_id = [](std::string_view part, uint32_t& id) {
    uint64_t v = 0;
    auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), v);
    if (part.empty() || ec != std::errc() || end != part.data() + part.size() || v > policy::kMaxId) {
      return false;
    }
    id = static_cast<uint32_t>(v);
    return true;
  };
  policy::Owner owner;
  if (!parse_id(text.substr(0, colon), owner.uid) || !parse_id(text.substr(colon + 1), owner.gid)) {
    throw std::invalid_argument(kExpected);
  }
  return owner;
}

std::string format_range(const policy::IdRange& range) {
  return std::to_string(range.inside) + ":" + std::to_string(range.outside) + ":" +
         std::to_string(range.count);
}

json app_to_json(const AppRecord& app) {
  json grants = json::array();
  for (const auto& g : app.grants) grants.push_back(grant_to_json(g));
  json admin = json::array();
  for (const auto& g : app.admin_grants) admin.push_back(grant_to_json(g));
  json dirs = json::array();
  for (const auto& d : app.data_dirs) {
    dirs.push_back({{"name", d.name}, {"created_by_version", d.created_by_version}, {"removed", d.removed}});
  }
  json mounts = json::array();
  for (const auto& m : app.storage_mounts) {
    mounts.push_back({{"host_path", m.host_path}, {"container_path", m.container_path}, {"read_only", m.read_only}});
  }
  json out = {{"version", app.version},
              {"uid_maps", ranges_to_json(app.uid_maps)},
              {"gid_maps", ranges_to_json(app.gid_maps)},
              {"grants", std::move(grants)},
              {"admin_grants", std::move(admin)},
              {"revoked", app.revoked},
              {"data_dirs", std::move(dirs)},
              {"storage_mounts", std::move(mounts)}};
  if (!app.installed_as.empty()) out["installed_as"] = app.installed_as;
  if (!app.storage_app.empty()) out["storage_app"] = app.storage_app;
  if (!app.share_access.empty()) out["share_access"] = app.share_access;
  return out;
}

json to_json(const State& state) {
  json doc = to_json_without_apps(state);
  json apps = json::object();
  for (const auto& [name, app] : state.apps) apps[name] = app_to_json(app);
  doc["apps"] = std::move(apps);
  return doc;
}

bool same_except_apps(const State& a, const State& b) {
  return a.shares == b.shares && a.share_trash == b.share_trash && a.attachments == b.attachments &&
         a.removals == b.removals && a.stores == b.stores && a.mounts == b.mounts && a.quotas == b.quotas;
}

json to_json_without_apps(const State& state) {
  json shares = json::object();
  for (const auto& [name, owner] : state.shares) shares[name] = {{"owner", format_owner(owner)}};
  for (const auto& [name, seconds] : state.share_trash) shares[name]["trash"] = policy::format_retention(seconds);
  json attachments = json::array();
  for (const auto& a : state.attachments) {
    json binds = json::array();
    for (const auto& b : a.binds) {
      binds.push_back({{"source", b.source}, {"target", b.target}, {"read_only", b.read_only}});
    }
    json record = {{"app", a.app}, {"pid", a.pid}, {"binds", std::move(binds)}};
    if (a.process) {
      record["start_time"] = a.process->start_time;
      record["mnt_ns"] = format_mnt_ns(*a.process);
      record["boot_id"] = a.process->boot_id;
    }
    attachments.push_back(std::move(record));
  }
  json doc = {{"schema_version", kStateSchemaVersion},
              {"shares", std::move(shares)},
              {"attachments", std::move(attachments)}};
  if (!state.removals.empty()) doc["removals"] = state.removals;
  if (!state.stores.empty()) {
    json stores = json::array();
    for (const auto& s : state.stores) {
      stores.push_back({{"path", s.path}, {"id", s.id}, {"fs_type", s.fs_type}, {"source", s.source}});
    }
    doc["stores"] = std::move(stores);
  }
  if (!state.mounts.empty()) {
    json mounts = json::array();
    for (const auto& m : state.mounts) {
      json one = {{"path", m.path}, {"mount_point", m.mount_point}, {"fs_type", m.fs_type}, {"source", m.source}};
      if (!m.fsid.empty()) one["fsid"] = m.fsid;
      mounts.push_back(std::move(one));
    }
    doc["mounts"] = std::move(mounts);
  }
  if (!state.quotas.empty()) doc["quotas"] = quotas_to_json(state.quotas);
  return doc;
}

State state_from_json(const json& doc) {
  const JsonReader root(doc);
  // journal_seq is the store's (mountmgr/state_store.hpp): which journal records the document
  // already holds. It says nothing about the state itself.
  root.expect_object({"schema_version", "journal_seq", "apps", "shares", "attachments", "removals", "stores", "mounts", "quotas"});
  const JsonReader version = root.member("schema_version", "an integer");
  if (version.as_integer(0, INT32_MAX) != kStateSchemaVersion) {
    version.fail("expected " + std::to_string(kStateSchemaVersion) + " (the schema this portalfs knows), got " +
                 describe_json(version.json()));
  }

  State state;
  const JsonReader apps = root.member("apps", "an object");
  if (!apps.json().is_object()) apps.fail("expected an object, got " + describe_json(apps.json()));
  for (const auto& item : apps.json().items()) {
    const JsonReader app(item.value(), apps.pointer() + "/" + pointer_token(item.key()));
    if (auto e = policy::check_app_name(item.key())) app.fail("key: " + *e);
    state.apps[item.key()] = read_app(app);
  }
  read_shares(root.member("shares", "an object"), state);
  const JsonReader attachments = root.member("attachments", "an array");
  attachments.expect_array();
  for (std::size_t i = 0; i < attachments.size(); ++i) {
    state.attachments.push_back(read_attachment(attachments.at(i)));
  }
  if (auto removals = root.opt_member("removals")) state.removals = read_removals(*removals);
  if (auto stores = root.opt_member("stores")) state.stores = read_stores(*stores);
  if (auto mounts = root.opt_member("mounts")) state.mounts = read_mounts(*mounts);
  if (auto quotas = root.opt_member("quotas")) state.quotas = read_quotas(*quotas);
  return state;
}

}  // namespace portalfs::mountmgr
