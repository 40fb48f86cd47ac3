// SPDX-License-Identifier: MIT
#pragma once

// Manager's insides, shared by manager.cpp (construction, the request cycle, healing) and the
// verb files verbs_apps.cpp, verbs_shares.cpp and verbs_storage.cpp.
//
// A verb is a function next to the others of its kind in one verb file, and one line in that
// file's table (app_verbs(), ...), which also documents its args; dispatch() looks the name up
// in every table. Adding a verb to a file touches only that file here, plus its portalctl
// command in tools/options.cpp; a new verb file adds its table to dispatch().
//
// The request cycle (Manager::handle):
//   1. parse the request; take `mutex` (held for the whole request: requests are rare and small,
//      and a read-modify-write of the state must not interleave with another);
//   2. the verb validates everything, builds the next state on a copy and provisions what it
//      needs on disk; a refusal (code 2) happens before any of that, so it changes nothing;
//   3. save the next state atomically (failure: code 1, the state in memory stays as it was,
//      and the verb's undo takes back what it did outside the state — except for a change
//      that takes rights away (revoke, remove, unmount, detach): that takes effect in memory
//      anyway, with a loud log line, and the worker saves it once the disk has room again, so
//      an app filling the disk can't keep the admin from cutting it off),
//      swap it in, run the verb's after_commit work (purge, prune: deletion only ever follows
//      a state that no longer refers to what is deleted and records what is being deleted);
//   4. a commit that changed the views takes a ticket (under `mutex`); after dropping `mutex`
//      the request waits until every earlier ticket was delivered, then calls ViewsChanged with
//      no lock held, then marks its ticket delivered. So callbacks arrive in commit order and
//      the callback may call views(); it must not call handle() (that would wait for itself).
//      Every commit takes a ticket, whether or not it changed the views: after its delivery the
//      request takes `mutex` again and brings the running containers of the apps it changed to
//      what those apps have now (follow_grants; mountmgr/attachments.cpp), but only when its
//      ticket is still the latest issued, so that every view a bind needs is served by then; a
//      later commit's request does it otherwise, for both. The container work (a fork and a
//      setns per attachment changed) runs under `mutex`, like attach and detach: requests are
//      rare, and an attachment must not be detached or replaced halfway through.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "common/unique_fd.hpp"
#include "mountmgr/manager.hpp"
#include "mountmgr/provision.hpp"
#include "mountmgr/request.hpp"
#include "mountmgr/shared_state.hpp"
#include "mountmgr/state.hpp"
#include "mountmgr/state_store.hpp"
#include "mountmgr/store.hpp"
#include "policy/manifest.hpp"

namespace portalfs::mountmgr {

/// What a verb did: its output, and the state to commit if it changes any.
struct Outcome {
  Outcome() = default;
  Outcome(std::string text) : output(std::move(text)) {}  // NOLINT: implicit, for `return {text};`

  std::string output;
  std::optional<State> next;
  policy::ViewSpecs killed;  // views revoked with force
  /// Destructive disk work to run once `next` is saved (purge, prune); throws to report a failure.
  std::function<void()> after_commit;
  /// Takes back what the verb did outside the state (attach) when `next` can't be saved.
  std::function<void()> undo;
  /// The change takes rights away (revoke, remove): it applies even when `next` can't be
  /// saved (see the file comment).
  bool takes_away = false;
};

/// Request args uid_maps / gid_maps: each "C:H:N", together a valid IdMap; nullopt when
/// absent (verbs_apps.cpp; app.json and compose apps alike).
std::optional<std::vector<policy::IdRange>> maps_arg(const Args& args, std::string_view key);

struct Manager::Impl {
  Impl(ManagerConfig config, ViewsChanged on_views_changed, StatusProvider status);
  ~Impl();

  ManagerConfig config;  // paths made absolute
  ViewsChanged on_views_changed;
  StatusProvider status_provider;
  StateStore store;

  mutable std::mutex mutex;  // guards state, views, view_count and tickets_issued
  State state;
  /// The views served, by app (each app's in mount order): a change rebuilds only the apps it
  /// touches (commit()).
  std::map<std::string, policy::ViewSpecs> views;
  std::size_t view_count = 0;
  /// Every view, apps by name (build_views' order).
  [[nodiscard]] policy::ViewSpecs all_views() const;
  /// Makes `all` (served_views()) the views served.
  void set_views(const policy::ViewSpecs& all);
  uint64_t tickets_issued = 0;

  // Delivery of ViewsChanged in commit order (see the file comment).
  std::mutex delivery_mutex;  // guards tickets_delivered; never held with `mutex`
  std::condition_variable delivery_cv;
  uint64_t tickets_delivered = 0;

  /// Apps changed by a commit whose running containers were not yet brought up to date
  /// (follow_grants). Guarded by `mutex`.
  std::set<std::string> apps_to_follow;

  /// With config.shared_state: the nodes' shared state, and the generation of it this node's
  /// state includes (written under `mutex`; the watcher reads it without).
  std::unique_ptr<SharedState> shared;
  std::atomic<uint64_t> shared_generation{0};
  /// Joins the shared state at start: adopts it, or starts it from this node's state.
  void join_shared();
  /// Under `mutex` and the shared lock: adopts a newer shared state into `state`.
  void catch_up_shared();
  /// One request's hold on the shared state (Manager::handle, under `mutex`): the nodes' lock,
  /// and the state caught up to theirs. Unless committed(), it takes the caught-up state back
  /// when it ends, so the watcher (or the next request) catches up again and serves it.
  class SharedScope {
   public:
    explicit SharedScope(Impl& impl);
    ~SharedScope();
    SharedScope(const SharedScope&) = delete;
    SharedScope& operator=(const SharedScope&) = delete;
    /// What this node served before the request (its state, without shared state).
    [[nodiscard]] const State& before() const { return lock_ ? before_ : impl_.state; }
    void committed() { armed_ = false; }

   private:
    Impl& impl_;
    std::optional<SharedState::Lock> lock_;
    State before_;
    uint64_t generation_ = 0;
    bool armed_ = false;
  };
  // The shared-state watcher (Manager::start): polls the generation every second.
  std::thread shared_watch;
  std::mutex shared_watch_mutex;
  std::condition_variable shared_watch_cv;
  bool shared_watch_stop = false;

  /// Where app, grant and share changes are recorded (Manager::set_audit); nullptr: nowhere.
  common::AuditLog* audit = nullptr;

  /// Non-empty while the state in memory is newer than state.json (a save failed for a change
  /// that takes rights away): why. Guarded by `mutex`.
  std::string unsaved;

  // The worker: empties the trash and retries an unsaved state, off the request path.
  std::mutex work_mutex;  // guards the four below; never held while taking `mutex`
  std::condition_variable work_cv;
  std::thread worker;
  bool work_stop = false;
  bool trash_dirty = false;  // something was moved to the trash
  bool trash_busy = false;   // empty_trash() is running
  /// Starts the worker if it is not running. Never from the constructor: portalfsd makes the
  /// manager before it forks, and a fork keeps only the calling thread (see Manager::start).
  void start_worker();
  /// Tells the worker the trash has work (it starts on it once started).
  void wake_worker();
  void worker_loop();
  void retry_unsaved();
  /// Moves the entries of the shares' trashes older than their share's retention into the
  /// trash above (verbs_trash.cpp). The worker calls it at start and every
  /// config.trash_purge_interval; a failure is logged.
  void purge_expired_trash();
  std::optional<std::chrono::steady_clock::time_point> last_trash_purge;  // the worker's own

  // Quotas (verbs_quota.cpp).
  /// config.quota_ops with the real functions where it has none.
  [[nodiscard]] QuotaOps quota_ops() const;
  /// status' "quota": which mode is in force ("project", "none" with the reason, "unknown").
  /// Under `mutex`.
  [[nodiscard]] nlohmann::json quota_status() const;
  /// Logs and audits each limited app or share whose usage went up to 90 % or 100 % since the
  /// last call (the worker calls it every second; one quotactl per quota).
  void check_quota_levels();
  std::map<std::string, int> quota_levels;  // the worker's own: the last level seen per quota

  // The storage root's store (mountmgr/store.hpp): the file system it must lead to.
  /// Its record, set once by the constructor (never changed after: read without `mutex`).
  std::optional<StoreRecord> root_store;
  /// Records the store at the first start with this storage root (writes the marker), or
  /// checks the recorded one. Constructor only.
  void init_store();
  // Guarded by `mutex`:
  std::string store_offline;  // "" = the storage root leads to its store; else why not (one line)
  uint64_t store_epoch = 0;   // ViewSpec::store_epoch: bumped whenever the store is found again
  uint64_t store_mnt_id = 0;  // the mount the storage root led to at the last check
  /// build_views() of `s`, with the views on an offline store marked offline.
  [[nodiscard]] policy::ViewSpecs served_views(const State& s) const;
  /// served_views() of one app of `s`.
  [[nodiscard]] policy::ViewSpecs served_views_of(const State& s, const std::string& app, const AppRecord& record) const;
  /// The full delivery of the views served now (recheck_*): every app's.
  [[nodiscard]] ViewsDelta all_delta() const;
  /// Every view served anew (a disk came or went: recheck_*), under `mutex`: what deliver()
  /// takes once the lock is released.
  struct Redelivery {
    uint64_t ticket = 0;
    std::optional<ViewsDelta> delta;
    std::optional<policy::ViewSpecs> views_now;
  };
  [[nodiscard]] Redelivery serve_all_again();
  /// Checks the store again; on a change (offline, back, another mount of it) logs one line
  /// and delivers the views. Called by the store watcher.
  void recheck_store();
  void recheck_root();
  // Backing directories on a mount of their own (State::mounts), as the storage root:
  // guarded by `mutex`. Path -> why it is offline (one line naming the share).
  std::map<std::string, std::string> mounts_offline;
  std::map<std::string, uint64_t> mount_epochs;  // added to store_epoch: bumped when it is back
  /// Records the backings found on another mount than the storage root's (the first time they
  /// are seen so) and checks the recorded ones; on a change logs one line per backing and,
  /// with `deliver_views`, delivers the views.
  void recheck_mounts(bool deliver_views);
  // The store watcher: a thread woken by mount changes (poll(POLLPRI) on /proc/self/mountinfo)
  // and every kStoreRecheck, so a disk mounted late, unmounted or mounted again is noticed
  // within a second or two while ops pay nothing. Started by start(), never from the
  // constructor (fork, as the worker).
  std::thread store_watch;
  common::UniqueFd store_watch_wake;  // eventfd: the destructor stops the watcher through it
  void start_store_watch();
  void store_watch_loop();

  /// Saves `next` as the state; throws StateError.
  /// `apps_changed`: every app that may differ from `state` (the others are known equal).
  void save(const State& next, const std::set<std::string>* apps_changed = nullptr);
  /// What a commit hands to deliver(), once `mutex` is let go.
  struct Committed {
    uint64_t ticket = 0;  // 0: nothing was committed
    std::optional<ViewsDelta> delta;         // set: the views changed
    std::optional<policy::ViewSpecs> views;  // with delta and no on_views_updated: every view (ViewsChanged)
  };
  /// Under `mutex`: makes `out.next` the state (saved, and shared when `verb_changed`), audits
  /// the change against `before`, and marks the apps whose containers must follow. A save that
  /// fails leaves the change in force in memory, with a warning in `response`, unless it takes
  /// something away (then the verb is undone and RequestError thrown).
  Committed commit(Outcome& out, const State& before, bool verb_changed, nlohmann::json& response);
  /// Moves every recorded removal into the trash and drops the records (under `mutex`, or
  /// before the manager is shared). Throws ProvisionError: the first failure, once the others
  /// are moved (or the storage root's, with nothing moved).
  void carry_out_removals();

  /// Once all earlier tickets are delivered, calls ViewsUpdated with `delta` (or ViewsChanged
  /// with `views_now`) for `ticket` if `delta` is set (the commit changed the views), then marks
  /// `ticket` delivered; no lock held during the call.
  void deliver(uint64_t ticket, const std::optional<ViewsDelta>& delta, const std::optional<policy::ViewSpecs>& views_now);

  // mountmgr/attachments.cpp: recorded attachments follow what their apps have now.
  /// One recorded attachment that could not be brought to what its app has now.
  struct AttachmentProblem {
    std::string app;
    int pid = 0;
    std::string why;  // one line (the attach or detach error)
    /// "app APP, pid PID: container not brought up to date: WHY"
    [[nodiscard]] std::string line() const;
  };
  struct Followed {
    int brought = 0;  // attachments the container work was done for, without a problem
    std::vector<AttachmentProblem> problems;
  };
  /// Brings every recorded attachment that `which` selects to what its app has now (the one
  /// function behind healing and live grants): the binds the app no longer has are detached,
  /// those it has anew or otherwise (and every bind below them, which goes along) are attached;
  /// with `remount_all`, every bind is attached again (the FUSE mount behind the old ones was
  /// replaced). An attachment whose process is gone or not the recorded one any more, or whose
  /// app is gone, is forgotten with a log line and never touched. Records what each container
  /// has now (state.json; a failed save is logged and retried by the worker) and logs each
  /// problem. Under `mutex`.
  Followed follow_attachments(const std::function<bool(const Attachment&)>& which, bool remount_all);
  /// The request of commit `ticket`, after its delivery: brings the attachments of the apps in
  /// apps_to_follow up to date unless a later commit was made (see the file comment). Takes
  /// `mutex`.
  std::vector<AttachmentProblem> follow_grants(uint64_t ticket);

  /// Carries out a request through the verb table; refuses (code 2) an unknown verb.
  Outcome dispatch(const Request& request);

  // verbs_compose.cpp: apps installed from a docker-compose.yml.template (args.compose);
  // app.install, app.upgrade and app.remove hand such requests over.
  Outcome compose_install(const Request& request, bool upgrade);
  Outcome compose_remove(const Request& request);
  [[nodiscard]] bool is_compose_app(const std::string& app) const;
  /// Manager::heal_attachments under `mutex` (mountmgr/attachments.cpp): follow_attachments of
  /// every attachment, every bind attached again. Returns how many were.
  int heal();

  // Helpers shared by the verbs.
  /// after_commit work of a purge or prune: carry out the removals recorded in the state.
  std::function<void()> remove_recorded(const std::string& what);
  /// The app named by argument `key` (validated), which must be installed.
  [[nodiscard]] std::string app_arg(const Args& args, std::string_view key = "app") const;
  /// The app's record; refuses (code 2) when it is not installed.
  const AppRecord& installed(const std::string& app) const;
  /// The storage root, opened for writing below it: refuses (ProvisionError, naming what the
  /// path leads to and what was expected) when it is not its recorded store, so nothing is
  /// ever provisioned, moved or deleted on the directory under an unmounted disk.
  [[nodiscard]] StorageRoot open_root() const;
  /// Makes the data directories and share directories of `record` (in `next`), filling its
  /// data_dirs from `previous` (records of an earlier version, kept or marked removed).
  void provision_app(const State& next, const std::string& app, AppRecord& record,
                     const std::vector<DataDirRecord>& previous) const;
  /// On btrfs, makes the app's data root a subvolume when it is new (see provision_app).
  void ensure_app_root(const StorageRoot& root, const std::string& app) const;
  /// Makes the mount point of every grant mounted inside one of the app's data dirs (immich's
  /// share at upload/library, inside data dir "upload") in that data dir: a runtime binds it
  /// there, and the view must already show it.
  void make_mount_points(const StorageRoot& root, const std::string& app, const AppRecord& record) const;
  /// The app's mounts as install/upgrade print them: docker lines (text) or the json style.
  /// Never throws for a path docker can't take: the text is then a note pointing to --format oci.
  [[nodiscard]] std::string mounts_output(const std::string& app, const AppRecord& record, bool json) const;
  /// Refuses (code 2) when two of the app's grants would have the same container path or the
  /// same view.
  static void check_no_clash(const std::string& app, const AppRecord& record);
};

/// One verb of the control protocol. The handler's type says whether it may change the state:
/// a read-only verb gets the manager as const (status, lists, reports).
struct Verb {
  using Changes = Outcome (*)(Manager::Impl&, const Request&);
  using Reads = Outcome (*)(const Manager::Impl&, const Request&);
  constexpr Verb(std::string_view verb, Changes handler) : name(verb), changes(handler) {}
  constexpr Verb(std::string_view verb, Reads handler) : name(verb), reads(handler) {}

  std::string_view name;  // as in the request: "app.install"
  Changes changes = nullptr;
  Reads reads = nullptr;
  [[nodiscard]] bool read_only() const { return reads != nullptr; }
};

/// The verb tables, one per verb file.
std::span<const Verb> app_verbs();      // verbs_apps.cpp
std::span<const Verb> share_verbs();    // verbs_shares.cpp
std::span<const Verb> storage_verbs();  // verbs_storage.cpp
std::span<const Verb> trash_verbs();    // verbs_trash.cpp
std::span<const Verb> quota_verbs();    // verbs_quota.cpp

/// status' line for Impl::quota_status().
std::string quota_status_line(const nlohmann::json& quota);

/// "share 'music' does not exist; create it with: portalctl share create music" unless it does.
void require_share(const State& state, const std::string& share);

/// Why the process of `attachment` is not the one recorded (gone, another process with its pid,
/// another mount namespace, or a record without an identity); "" when it still is.
std::string not_the_recorded_process(const Attachment& attachment, const AttachOps& ops);

/// A grant as people name it: "data dir data", "share music", "storage mount /srv/x".
std::string describe_grant(const policy::Grant& grant);

}  // namespace portalfs::mountmgr
