// SPDX-License-Identifier: MIT
#pragma once

// The mount manager's whole memory: one JSON document (state.json, schema_version 1).
//
//   {"schema_version": 1,
//    "apps": {"navidrome": {
//        "installed_as": "Navidrome",    the name given at install (absent in older states)
//        "version": "3.2",
//        "uid_maps": ["0:100000:65536"], "gid_maps": ["0:100000:65536"],
//        "grants": [Grant...],          what the manifest asked for, as installed/upgraded
//        "admin_grants": [Grant...],    shared grants given or changed with `grant`
//        "revoked": ["music"],          manifest shares taken away with `revoke`
//        "data_dirs": [{"name": "data", "created_by_version": "3.1", "removed": false}],
//        "storage_mounts": [{"host_path": "/srv/x", "container_path": "/x", "read_only": true}]}},
//    "shares": {"own_media": {"owner": "0:0", "trash": "30d"}},   (trash: absent when off)
//    "attachments": [{"app": "navidrome", "pid": 4242,
//                     "binds": [{"source": "...", "target": "/data", "read_only": false}],
//                     "start_time": 1234567, "mnt_ns": "4:4026532712",
//                     "boot_id": "5df01789-32de-436b-b19c-ee51f4da9472"}],
//                     (start_time, mnt_ns and boot_id identify the process beyond its pid:
//                     mountmgr/attach.hpp ProcessIdentity; a file from before they were kept
//                     has none of them)
//    "removals": ["apps/old-app"],                  (absent when empty)
//    "stores": [{"path": "/var/lib/portalfs/storage", "id": "<32 hex digits>",
//                "fs_type": "ext4", "source": "/dev/sdb1"}]}   (absent when empty;
//                the file system each store must lead to: mountmgr/store.hpp)
//    "mounts": [{"path": "/var/lib/portalfs/storage/shared/music", "mount_point": "/var/lib/portalfs/storage/shared/music",
//                "fs_type": "ext4", "source": "/dev/sdc1"}]   (absent when empty; backings on a
//                mount of their own, served only while they lead there: BackingMount)
//    "quotas": {"apps/notes": {"project_id": 100000, "bytes": 10737418240, "inodes": 0}}
//                (absent when empty; policy/quota.hpp, mountmgr/quota.hpp)
//    "journal_seq": 42      (the store's: the last record of state.journal this document holds;
//                            absent: 0. mountmgr/state_store.hpp)
//   Grant = {"kind": "data"|"shared"|"host", "name", "container_path",
//            "access": a mode (policy::to_string(Access)), "owner"?: "UID:GID",
//            "sidecars"?: ["*.xmp", ...] (read grants only),
//            "audit_reads"?: true (reads through the view are audited; absent: false)}
//
// The manifest's grants and the admin's changes are kept apart so that re-installing the same
// manifest is recognised as "no change", and an upgrade replaces what the app asks for without
// undoing what the admin decided. The grants actually served are derived (mountmgr/views.hpp).
//
// Reading is strict: an unknown field, a missing field or a wrong type is a FieldError that
// names the JSON pointer; nothing is half-read.

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "mountmgr/attach.hpp"
#include "mountmgr/store.hpp"
#include "policy/grant.hpp"
#include "policy/id_map.hpp"

namespace portalfs::mountmgr {

inline constexpr int kStateSchemaVersion = 1;

/// A private data directory below <storage>/apps/<app>/ and the app version that created it.
struct DataDirRecord {
  std::string name;                // = the data grant's name ("data/documents")
  std::string created_by_version;  // "" when that manifest had no version
  bool removed = false;            // no longer in the manifest; kept on disk until a prune
  friend bool operator==(const DataDirRecord&, const DataDirRecord&) = default;
};

/// A hand-made mount (Dokku's storage:mount): served through portalfs as a host grant.
struct StorageMount {
  std::string host_path;       // absolute, as the admin gave it (normalised)
  std::string container_path;  // absolute, normalised
  bool read_only = false;
  friend bool operator==(const StorageMount&, const StorageMount&) = default;
};

struct AppRecord {
  /// The name the app was installed (or last upgraded) under: AppSpec::given_name. Another
  /// name that gives the same id is another app, and is refused. "" in a record from before
  /// names were kept: then any name giving the id is taken for this app's.
  std::string installed_as;
  std::string version;
  std::vector<policy::IdRange> uid_maps;
  std::vector<policy::IdRange> gid_maps;
  std::vector<policy::Grant> grants;        // from the manifest
  std::vector<policy::Grant> admin_grants;  // shared grants from `grant` (override the manifest's)
  std::vector<std::string> revoked;         // shares of the manifest hidden by `revoke`
  std::vector<DataDirRecord> data_dirs;
  std::vector<StorageMount> storage_mounts;
  /// A service of a compose app (mountmgr/verbs_compose.cpp): the compose app's id, whose
  /// directory below <storage>/apps/ holds this record's data dirs; "" = the record's own.
  /// Written to state.json only when set ("storage_app").
  std::string storage_app;
  /// A compose app's operator rules for its shares ("pictures=read", "*=read-write"), given
  /// with --share at install or upgrade and kept for the next upgrade that gives none.
  /// Written to state.json only when set ("share_access").
  std::vector<std::string> share_access;
  friend bool operator==(const AppRecord&, const AppRecord&) = default;
};

/// An app record as State::apps holds it: shared by every State that has it unchanged, so that
/// copying a State copies a pointer per app, not every record, and a verb copies only the record
/// it changes (edit()). Two states compare their records by pointer first: a record a change did
/// not touch is the very same object before and after, and costs no field-by-field compare.
/// Reads go through `->`, `*` or the conversion to const AppRecord&.
class AppRef {
 public:
  AppRef() : record_(std::make_shared<AppRecord>()) {}
  AppRef(AppRecord record) : record_(std::make_shared<AppRecord>(std::move(record))) {}  // NOLINT: implicit
  const AppRecord& operator*() const { return *record_; }
  const AppRecord* operator->() const { return record_.get(); }
  operator const AppRecord&() const { return *record_; }  // NOLINT: implicit, for const AppRecord& parameters
  /// The record, to change: copied first if another State shares it (a State is copied and
  /// edited under the manager's mutex only). A reference taken here must not be held across a
  /// copy of the State that holds it: the copy would share what it then changes.
  AppRecord& edit() {
    if (record_.use_count() > 1) record_ = std::make_shared<AppRecord>(*record_);
    return *record_;
  }
  /// Whether both hold the very same record (not merely equal ones).
  [[nodiscard]] bool same_object(const AppRef& other) const { return record_ == other.record_; }
  friend bool operator==(const AppRef& a, const AppRef& b) { return a.same_object(b) || *a.record_ == *b.record_; }

 private:
  std::shared_ptr<AppRecord> record_;
};

/// Views bound into a running container's mount namespace (attach), kept so they can be
/// re-attached after a daemon restart; `binds` follow the app's grants as they change
/// (mountmgr/attachments.cpp): they are what the container has now.
struct Attachment {
  std::string app;
  int pid = 0;
  std::vector<Bind> binds;
  /// The process attached to (its pid is `pid`), so that a record is never applied to a later
  /// process with the same pid. Missing in a record from an older state file: such a record
  /// can't be verified, and healing drops it.
  std::optional<ProcessIdentity> process;
  friend bool operator==(const Attachment&, const Attachment&) = default;
};

/// A quota's project id and limits (0 = none). A cleared quota keeps its record, limits 0: the
/// files on disk keep the id, so it is never given to another app or share.
struct QuotaRecord {
  uint32_t project_id = 0;
  uint64_t bytes = 0;
  uint64_t inodes = 0;
  /// Set where the storage root's file system had no project quotas: portalfsd accounts the
  /// limit itself (fuse/quota_account.hpp), and its views lose passthrough. Kept in the state
  /// as "enforced_by": "daemon" (absent: the kernel's project quota).
  bool by_daemon = false;
  /// Set where the target's directory is a btrfs subvolume: the limit is its qgroup's
  /// max_referenced (common/btrfs.hpp); the project id is kept unused. "enforced_by": "btrfs".
  bool by_btrfs = false;
  friend bool operator==(const QuotaRecord&, const QuotaRecord&) = default;
};

/// A backing directory (a share's, a storage:mount path) found on another file system than
/// the storage root's: its views are served only while the path leads to that mount again
/// (a disk not mounted yet, or gone, leaves the directory underneath, or nothing).
struct BackingMount {
  std::string path;         // the backing directory
  std::string mount_point;  // where the mount it was found on is mounted ("/mnt/music")
  std::string fs_type;      // as /proc/self/mountinfo named it then; said when it is missing
  std::string source;
  /// Its statfs f_fsid when first seen, as hex ("": none was given): another disk mounted at
  /// the same place (ext4 and btrfs derive it from the file system's UUID) is not this one.
  std::string fsid;
  friend bool operator==(const BackingMount&, const BackingMount&) = default;
};

struct State {
  std::map<std::string, AppRef> apps;
  std::map<std::string, policy::Owner> shares;  // share name -> owner of its directory
  /// Shares with a trash (policy/trash.hpp) -> how long its entries are kept, in seconds (> 0).
  /// In state.json as the share's "trash": "30d", absent when it has none.
  std::map<std::string, int64_t> share_trash;
  std::vector<Attachment> attachments;
  /// Trees to delete (purge, prune), as paths below the storage root ("apps/notes",
  /// "apps/notes/cache"): recorded before the deletion starts, dropped once the tree is in the
  /// trash (mountmgr/provision.hpp), which the daemon empties in the background. A record
  /// found at start-up is carried out then.
  std::vector<std::string> removals;
  /// The file systems the storage root was found on (mountmgr/store.hpp), one per path.
  std::vector<StoreRecord> stores;
  /// Backing directories on a mount of their own (manager.cpp, recheck_mounts), one per path.
  std::vector<BackingMount> mounts;
  /// policy::QuotaTarget::key() ("apps/notes", "shared/docs") -> its project id and limits.
  std::map<std::string, QuotaRecord> quotas;
  friend bool operator==(const State&, const State&) = default;
};

/// Walks the apps of two states side by side, once, in name order: `removed(name, record)` for
/// an app only `before` has, `added(name, record)` for one only `after` has, `kept(name, was,
/// now)` for one both have (`was.same_object(now)` when the change did not touch its record).
template <typename Removed, typename Added, typename Kept>
void walk_apps(const State& before, const State& after, Removed removed, Added added, Kept kept) {
  auto a = before.apps.begin();
  auto b = after.apps.begin();
  while (a != before.apps.end() || b != after.apps.end()) {
    if (b == after.apps.end() || (a != before.apps.end() && a->first < b->first)) {
      removed(a->first, a->second);
      ++a;
    } else if (a == before.apps.end() || b->first < a->first) {
      added(b->first, b->second);
      ++b;
    } else {
      kept(a->first, a->second, b->second);
      ++a;
      ++b;
    }
  }
}

/// The state of a new installation: the shares own_media and own_documents, owned by 0:0.
State fresh_state();

nlohmann::json to_json(const State& state);
/// to_json() but for "apps": what a journal record carries when anything but the apps changed.
nlohmann::json to_json_without_apps(const State& state);
/// Whether everything but the apps is the same in both.
bool same_except_apps(const State& a, const State& b);
/// Strict: throws FieldError (pointer + problem) on the first fault.
State state_from_json(const nlohmann::json& doc);

/// The JSON of one app record, as app.show prints it.
nlohmann::json app_to_json(const AppRecord& app);

/// "UID:GID" <-> Owner. parse_owner throws std::invalid_argument: what was expected.
std::string format_owner(const policy::Owner& owner);
policy::Owner parse_owner(std::string_view text);

/// "inside:outside:count".
std::string format_range(const policy::IdRange& range);

}  // namespace portalfs::mountmgr
