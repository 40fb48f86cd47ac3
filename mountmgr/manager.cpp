// SPDX-License-Identifier: MIT
// Manager: construction, the request cycle (see manager_impl.hpp), healing and status.
// The verbs live in verbs_apps.cpp, verbs_shares.cpp and verbs_storage.cpp.

#include "mountmgr/manager.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <stdexcept>
#include <string_view>
#include <unordered_set>

#include "common/audit.hpp"
#include "common/btrfs.hpp"
#include "common/escape.hpp"
#include "common/log.hpp"
#include "mountmgr/audit_changes.hpp"
#include "mountmgr/control_protocol.hpp"
#include "mountmgr/manager_impl.hpp"
#include "mountmgr/mount_spec.hpp"
#include "mountmgr/paths.hpp"
#include "mountmgr/views.hpp"

#ifndef PORTALFS_VERSION
#define PORTALFS_VERSION "unknown"
#endif

namespace portalfs::mountmgr {
namespace {

std::string absolute_path(const std::string& path) {
  return normalise_host_path(std::filesystem::absolute(path).lexically_normal().string());
}

/// Adds to an ok response one line per attachment the change did not reach (text), or
/// "attachment_errors" [{app, pid, error}] to a JSON object output; any other JSON output
/// (stdout stays pure JSON) gets them as the response's warning. A failed request's error stays
/// its one line: the problems are logged.
void report_attachment_problems(nlohmann::json& response, bool json_format,
                                const std::vector<Manager::Impl::AttachmentProblem>& problems) {
  if (problems.empty() || !response.value("ok", false)) return;
  std::string output = response.value("output", "");
  if (!json_format) {
    for (const auto& p : problems) output += p.line() + "\n";
    response["output"] = output;
    return;
  }
  nlohmann::json doc = nlohmann::json::parse(output, nullptr, /*allow_exceptions=*/false);
  if (doc.is_object()) {
    nlohmann::json errors = nlohmann::json::array();
    for (const auto& p : problems) errors.push_back({{"app", p.app}, {"pid", p.pid}, {"error", p.why}});
    doc["attachment_errors"] = std::move(errors);
    response["output"] = doc.dump(2) + "\n";
    return;
  }
  std::string warning = response.value("warning", "");
  for (const auto& p : problems) warning += (warning.empty() ? "" : "; ") + p.line();
  response["warning"] = warning;
}

ManagerConfig with_defaults(ManagerConfig config) {
  config.storage_root = absolute_path(config.storage_root);
  config.state_dir = absolute_path(config.state_dir);
  config.mountpoint = absolute_path(config.mountpoint);
  AttachOps& ops = config.attach_ops;
  if (!ops.attach) ops.attach = attach_binds;
  if (!ops.detach) ops.detach = detach_binds;
  if (!ops.identify) ops.identify = identify_process;
  return config;
}

}  // namespace

Manager::Impl::Impl(ManagerConfig cfg, ViewsChanged changed, StatusProvider status)
    : config(with_defaults(std::move(cfg))),
      on_views_changed(std::move(changed)),
      status_provider(std::move(status)),
      store(config.state_dir) {
  StateStore::Loaded loaded = store.load(config.recover_from_backup);
  if (loaded.from_backup) {
    // Make state.json good again at once, rather than at the first change.
    store.save(loaded.state);
  }
  state = std::move(loaded.state);
  init_store();
  recheck_mounts(/*deliver_views=*/false);
  if (config.shared_state) join_shared();
  try {
    set_views(served_views(state));
  } catch (const std::exception& e) {
    throw StateError(store.path() + ": " + e.what());
  }
  // A purge or prune that a crash interrupted: finish moving it out of the way now, before
  // anything is served (the trash itself is emptied by the worker).
  try {
    carry_out_removals();
  } catch (const ProvisionError& e) {
    common::log(common::LogLevel::error, e.what());
  }
}

Manager::Impl::~Impl() {
  {
    std::lock_guard lock(work_mutex);
    work_stop = true;
  }
  work_cv.notify_all();
  if (worker.joinable()) worker.join();
  if (store_watch_wake) {
    const uint64_t one = 1;
    if (::write(store_watch_wake.get(), &one, sizeof(one)) < 0) {
      common::log(common::LogLevel::warn, std::string("cannot stop the store watcher: ") + std::strerror(errno));
    }
  }
  if (store_watch.joinable()) store_watch.join();
  // A clean stop leaves one whole state.json (the journal folded in): what an admin reads,
  // backs up or edits with the daemon stopped is the whole state.
  std::lock_guard lock(mutex);
  if (unsaved.empty() && store.journaled()) {
    try {
      store.save(state);
    } catch (const StateError& e) {
      common::log(common::LogLevel::warn, std::string("state journal not folded in at stop: ") + e.what());
    }
  }
}

// ---- the storage root's store (mountmgr/store.hpp) ---------------------------------------------

void Manager::Impl::init_store() {
  const auto recorded = std::find_if(state.stores.begin(), state.stores.end(),
                                     [&](const StoreRecord& r) { return r.path == config.storage_root; });
  if (recorded != state.stores.end()) {
    root_store = *recorded;
    const StoreProbe probe = probe_store(config.storage_root, /*describe_mount=*/true);
    store_offline = store_mismatch(*root_store, probe);
    store_mnt_id = probe.mnt_id;
    if (!store_offline.empty()) {
      common::log(common::LogLevel::error, "storage root OFFLINE: " + store_offline +
                                               "; its views answer EIO until it is back");
    }
    return;
  }
  // The first start with this storage root: whatever it leads to now is the store (a marker
  // already there, from a state that was lost, is taken as it is).
  const StorageRoot root(config.storage_root);
  const StoreProbe probe = probe_store_fd(root.fd(), /*describe_mount=*/true);
  StoreRecord record{config.storage_root, probe.marker ? *probe.marker : new_store_id(),
                     probe.mount ? probe.mount->fs_type : "", probe.mount ? probe.mount->source : ""};
  if (!probe.marker) write_store_marker(root.fd(), root.path(), record.id);
  State next = state;
  next.stores.push_back(record);
  store.save(next);
  state = std::move(next);
  common::log(common::LogLevel::info, "storage root " + record.path + ": serving the file system " +
                                          (record.fs_type.empty() ? "?" : record.fs_type) + " from " +
                                          (record.source.empty() ? "?" : record.source) + ", store id " +
                                          record.id + " (in " + kStoreMarker + ")");
  root_store = std::move(record);
  store_mnt_id = probe.mnt_id;
}

policy::ViewSpecs Manager::Impl::served_views(const State& s) const {
  policy::ViewSpecs out;
  for (const auto& [name, record] : s.apps) {
    for (auto& v : served_views_of(s, name, record)) out.push_back(std::move(v));
  }
  return out;
}

policy::ViewSpecs Manager::Impl::served_views_of(const State& s, const std::string& app, const AppRecord& record) const {
  policy::ViewSpecs out;
  for (const auto& grant : effective_grants(record)) {
    out.push_back(make_view(s, config.storage_root, app, record, grant, config.apps_dir));
  }
  for (auto& v : out) {
    // Data and shared views are below the storage root; host views (storage:mount) are not.
    if (v.anchor != config.storage_root) continue;
    v.offline = !store_offline.empty();
    v.store_epoch = store_epoch;
  }
  for (auto& v : out) {
    if (mounts_offline.count(v.backing)) v.offline = true;
    if (auto it = mount_epochs.find(v.backing); it != mount_epochs.end()) v.store_epoch += it->second;
  }
  return out;
}

void Manager::Impl::recheck_store() {
  recheck_root();
  recheck_mounts(/*deliver_views=*/true);
}

namespace {
// What names a view's backing in a log line: the share, or the app's directory.
std::string backing_label(const policy::ViewSpec& v) {
  const char* kind = v.kind == policy::GrantKind::shared ? "share" : v.kind == policy::GrantKind::host ? "host mount" : "data directory";
  return std::string(kind) + " \"" + v.dir_name + "\" (" + v.backing + ")";
}

// "" when `probe` shows the path on the mount `m` records; else what it leads to instead.
std::string mount_mismatch(const BackingMount& m, const StoreProbe& probe) {
  const std::string expected = "not to " + (m.fs_type.empty() ? std::string("?") : m.fs_type) + " from " +
                               (m.source.empty() ? std::string("?") : m.source) + " mounted at " + m.mount_point;
  if (!probe.error.empty()) return "cannot open it (" + probe.error + "), " + expected;
  if (!probe.mount) return "cannot tell which mount it is on, " + expected;
  if (probe.mount->mount_point != m.mount_point) {
    return "it leads to " + probe.mount->fs_type + " mounted at " + probe.mount->mount_point + ", " + expected;
  }
  if (m.fsid.empty() || probe.fsid.empty() || probe.fsid == m.fsid) return "";
  return "another disk is mounted there (" + probe.mount->fs_type + " from " + probe.mount->source + ", fsid " +
         probe.fsid + ", not " + m.fsid + "), " + expected;
}
}  // namespace

void Manager::Impl::recheck_mounts(bool deliver_views) {
  std::vector<BackingMount> tracked;
  std::vector<std::string> backings;  // every view's backing dir, once each
  policy::ViewSpecs built;            // at start only: the views are not made yet
  uint64_t root_mnt = 0;
  {
    std::lock_guard lock(mutex);
    tracked = state.mounts;
    root_mnt = store_mnt_id;
    if (!store_offline.empty()) root_mnt = 0;  // the storage root leads elsewhere: record nothing
    // From the views served: a recheck (every 2 s, and at every mount or unmount anywhere)
    // builds no view (building them all took ~50 ms at 6,000 apps, under `mutex`).
    if (view_count == 0) built = build_views(state, config.storage_root, config.apps_dir);
    std::unordered_set<std::string_view> seen;
    const auto add = [&](const policy::ViewSpec& v) {
      if (seen.insert(v.backing).second) backings.push_back(v.backing);
    };
    for (const auto& v : built) add(v);
    for (const auto& entry : views) {
      for (const auto& v : entry.second) add(v);
    }
  }
  // What names a backing in a log line (under `mutex`; only when something is logged).
  const auto label_of = [&](const std::string& path) {
    for (const auto& v : built) {
      if (v.backing == path) return backing_label(v);
    }
    for (const auto& entry : views) {
      for (const auto& v : entry.second) {
        if (v.backing == path) return backing_label(v);
      }
    }
    return path;
  };
  // Probed without the lock: a statx per backing, and mountinfo only where a mount differs.
  std::vector<BackingMount> found;
  for (const auto& path : backings) {
    if (!root_mnt || std::any_of(tracked.begin(), tracked.end(), [&](const auto& m) { return m.path == path; })) continue;
    StoreProbe p = probe_store(path, /*describe_mount=*/false);
    if (!p.error.empty() || !p.mnt_id || p.mnt_id == root_mnt) continue;
    p = probe_store(path, /*describe_mount=*/true);
    if (!p.error.empty() || !p.mount || p.mount->mount_point == "/") continue;
    found.push_back({path, p.mount->mount_point, p.mount->fs_type, p.mount->source, p.fsid});
  }
  std::map<std::string, std::string> offline;
  for (const auto& m : tracked) {
    const std::string why = mount_mismatch(m, probe_store(m.path, /*describe_mount=*/true));
    if (!why.empty()) offline[m.path] = why;
  }
  Redelivery again;
  {
    std::lock_guard lock(mutex);
    // A mount found over a backing the views opened before: they re-open it (a new epoch).
    bool changed = !found.empty();
    if (!found.empty()) {
      State next = state;
      for (const auto& m : found) {
        if (std::any_of(next.mounts.begin(), next.mounts.end(), [&](const auto& o) { return o.path == m.path; })) continue;
        next.mounts.push_back(m);
        ++mount_epochs[m.path];
        common::log(common::LogLevel::info, label_of(m.path) + " is on its own mount (" + m.fs_type + " from " + m.source +
                                                " at " + m.mount_point + "): served only while it leads there");
      }
      save(next);
      state = std::move(next);
    }
    for (const auto& m : tracked) {
      auto now = offline.find(m.path);
      auto was = mounts_offline.find(m.path);
      if (now == offline.end() && was == mounts_offline.end()) continue;  // online, as it was
      const std::string label = label_of(m.path);
      if (now != offline.end() && was == mounts_offline.end()) {
        common::log(common::LogLevel::error, label + " OFFLINE: " + now->second + "; its views answer EIO until it is back");
        mounts_offline[m.path] = label + ": " + now->second;
        changed = true;
      } else if (now == offline.end() && was != mounts_offline.end()) {
        common::log(common::LogLevel::info, label + " is back on " + m.mount_point + ": its views are served again");
        mounts_offline.erase(was);
        ++mount_epochs[m.path];
        changed = true;
      } else if (now != offline.end()) {
        was->second = label + ": " + now->second;  // what it leads to may have changed
      }
    }
    if (!changed || !deliver_views) return;
    again = serve_all_again();
  }
  deliver(again.ticket, again.delta, again.views_now);
}

void Manager::Impl::recheck_root() {
  if (!root_store) return;
  StoreProbe probe = probe_store(config.storage_root, /*describe_mount=*/false);
  std::string why = store_mismatch(*root_store, probe);
  if (!why.empty()) {
    // Only now is the mount worth describing (a line of /proc/self/mountinfo per mount).
    probe = probe_store(config.storage_root, /*describe_mount=*/true);
    why = store_mismatch(*root_store, probe);
  }
  Redelivery again;
  {
    std::lock_guard lock(mutex);
    const bool was_online = store_offline.empty();
    const bool online = why.empty();
    // Online on another mount than before: unmounted and mounted again between two checks.
    const bool moved = was_online && online && probe.mnt_id != store_mnt_id;
    store_mnt_id = probe.mnt_id;
    if (was_online == online && !moved) {
      if (!online) store_offline = why;  // what it leads to may have changed; no new views
      return;
    }
    store_offline = why;
    ++store_epoch;
    if (!online) {
      common::log(common::LogLevel::error, "storage root OFFLINE: " + why + "; its views answer EIO until it is back");
    } else if (moved) {
      common::log(common::LogLevel::warn, "storage root " + config.storage_root +
                                              " was mounted again: its views re-open it");
    } else {
      common::log(common::LogLevel::info, "storage root " + config.storage_root + " is back (store id " +
                                              root_store->id + "): its views are served again");
    }
    again = serve_all_again();
  }
  deliver(again.ticket, again.delta, again.views_now);
}

void Manager::Impl::start_store_watch() {
  if (!root_store || store_watch.joinable()) return;
  store_watch_wake.reset(::eventfd(0, EFD_CLOEXEC));
  if (!store_watch_wake) {
    common::log(common::LogLevel::error, std::string("store watcher not started: eventfd: ") + std::strerror(errno));
    return;
  }
  store_watch = std::thread([this] { store_watch_loop(); });
}

void Manager::Impl::store_watch_loop() {
  // Mount changes wake us at once; the timeout catches what makes no mount event (the admin
  // writing the marker the offline message asks for, a mount in another namespace's view).
  constexpr int kRecheckMs = 2000;
  common::UniqueFd mountinfo(::open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC));
  if (!mountinfo) {
    common::log(common::LogLevel::warn, std::string("cannot watch /proc/self/mountinfo (") + std::strerror(errno) +
                                            "): checking the storage root every " + std::to_string(kRecheckMs) +
                                            " ms");
  }
  while (true) {
    pollfd fds[2] = {{store_watch_wake.get(), POLLIN, 0}, {mountinfo ? mountinfo.get() : -1, POLLPRI, 0}};
    const int n = ::poll(fds, 2, kRecheckMs);
    if (n < 0 && errno != EINTR) {
      common::log(common::LogLevel::error, std::string("store watcher: poll: ") + std::strerror(errno));
      return;
    }
    if (n > 0 && (fds[0].revents & POLLIN)) return;
    try {
      recheck_store();
    } catch (const std::exception& e) {
      common::log(common::LogLevel::error, std::string("store watcher: ") + e.what());
    }
  }
}

void Manager::Impl::save(const State& next, const std::set<std::string>* apps_changed) {
  // `state` is what the last save wrote, unless one failed since: then the whole of `next`.
  // With shared state, `state` also holds what other nodes changed (catch_up_shared), which
  // this node never saved: the whole of `next` too.
  if (unsaved.empty() && !shared) {
    store.save(next, state, apps_changed);
  } else {
    store.save(next);
  }
  if (!unsaved.empty()) {
    common::log(common::LogLevel::warn, "state saved again to " + store.path());
    unsaved.clear();
  }
}

void Manager::Impl::carry_out_removals() {
  if (state.removals.empty()) return;
  std::optional<ProvisionError> first_error;
  // A failure to open the storage root itself propagates: the records are kept for the next try.
  const StorageRoot root = open_root();
  for (const auto& path : state.removals) {
    try {
      auto components = split_path(path);  // "apps/<app>[/<dir>]": apps/ is config.apps_dir on disk
      if (!components.empty() && components.front() == "apps") components.front() = config.apps_dir;
      move_to_trash(root, components);
    } catch (const ProvisionError& e) {
      // Not retried: what can't be moved now (a mount point) won't move at the next start.
      common::log(common::LogLevel::error, std::string("not deleted: ") + e.what());
      if (!first_error) first_error = e;
    }
  }
  State next = state;
  next.removals.clear();
  try {
    save(next);
  } catch (const StateError& e) {
    // Harmless: a record whose tree is gone is dropped at the next start.
    common::log(common::LogLevel::warn, std::string("after moving deleted data to the trash: ") + e.what());
  }
  state = std::move(next);
  wake_worker();
  if (first_error) throw *first_error;
}

std::function<void()> Manager::Impl::remove_recorded(const std::string& what) {
  return [this, what] {
    try {
      carry_out_removals();
    } catch (const ProvisionError& e) {
      start_worker();  // a request runs after portalfsd forked: the worker may start now
      failed(what + " failed: " + e.what());
    }
    start_worker();
  };
}

void Manager::Impl::start_worker() {
  std::lock_guard lock(work_mutex);
  if (!worker.joinable() && !work_stop) worker = std::thread([this] { worker_loop(); });
}

void Manager::Impl::wake_worker() {
  {
    std::lock_guard lock(work_mutex);
    trash_dirty = true;
  }
  work_cv.notify_all();
}

void Manager::Impl::retry_unsaved() {
  std::lock_guard lock(mutex);
  if (unsaved.empty()) return;
  try {
    save(state);
  } catch (const StateError& e) {
    unsaved = e.what();
  }
}

void Manager::Impl::worker_loop() {
  constexpr auto kRetry = std::chrono::seconds(1);  // how often an unsaved state is retried
  while (true) {
    {
      std::unique_lock lock(work_mutex);
      work_cv.wait_for(lock, kRetry, [&] { return work_stop || trash_dirty; });
      if (work_stop) return;
      if (!trash_dirty) {
        lock.unlock();
        retry_unsaved();
        purge_expired_trash();
        check_quota_levels();
        work_cv.notify_all();
        continue;
      }
      trash_dirty = false;
      trash_busy = true;
    }
    try {
      const StorageRoot root = open_root();
      const TrashReport report = empty_trash(root, [this] {
        std::lock_guard lock(work_mutex);
        return !work_stop;
      });
      if (report.deleted > 0) {
        common::log(common::LogLevel::info, "trash: deleted " + std::to_string(report.deleted) + " entries");
      }
      if (report.left > 0) {
        common::log(common::LogLevel::warn, "trash: " + std::to_string(report.left) +
                                                " entries left in " + root.display(trash_components()) + ": " +
                                                report.problem);
      }
    } catch (const std::exception& e) {
      common::log(common::LogLevel::error, std::string("trash: ") + e.what());
    }
    retry_unsaved();
    {
      std::lock_guard lock(work_mutex);
      trash_busy = false;
    }
    work_cv.notify_all();
  }
}

void Manager::start() {
  if (impl_->shared && !impl_->shared_watch.joinable()) impl_->shared_watch = std::thread([this] { watch_shared(); });
  impl_->start_store_watch();
  impl_->start_worker();
  impl_->wake_worker();  // what a crash left in the trash
}

bool Manager::wait_idle(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    bool saved = false;
    {
      std::lock_guard lock(impl_->mutex);
      saved = impl_->unsaved.empty();
    }
    std::unique_lock lock(impl_->work_mutex);
    if (saved && !impl_->trash_dirty && !impl_->trash_busy) return true;
    if (impl_->work_cv.wait_until(lock, deadline) == std::cv_status::timeout) return false;
  }
}

Manager::Manager(ManagerConfig config, ViewsChanged on_views_changed, StatusProvider status)
    : impl_(std::make_unique<Impl>(std::move(config), std::move(on_views_changed), std::move(status))) {}

Manager::~Manager() {
  // The watcher calls handle(): it stops before anything it uses goes.
  {
    std::lock_guard lock(impl_->shared_watch_mutex);
    impl_->shared_watch_stop = true;
  }
  impl_->shared_watch_cv.notify_all();
  if (impl_->shared_watch.joinable()) impl_->shared_watch.join();
}

// ---- shared state (mountmgr/shared_state.hpp) ----

void Manager::Impl::join_shared() {
  shared = std::make_unique<SharedState>(config.storage_root);
  auto lock = shared->lock();
  if (auto snap = shared->read()) {
    state = merge(state, snap->state);
    shared_generation = snap->generation;
    store.save(state);
    common::log(common::LogLevel::info, "shared state: joined " + shared->path() + " at generation " +
                                            std::to_string(snap->generation) + " (" +
                                            std::to_string(state.apps.size()) + " apps)");
  } else {
    shared->write(1, state);
    shared_generation = 1;
    common::log(common::LogLevel::info, "shared state: started " + shared->path() + " from this node's state");
  }
}

void Manager::Impl::catch_up_shared() {
  auto snap = shared->read();
  if (!snap || snap->generation <= shared_generation) return;
  state = merge(state, snap->state);
  shared_generation = snap->generation;
}

void Manager::watch_shared() {
  // A change made on another node is adopted by the next request; without one, within a
  // second: an empty request ("status") goes through handle(), which catches up and serves it.
  std::unique_lock lock(impl_->shared_watch_mutex);
  while (!impl_->shared_watch_cv.wait_for(lock, std::chrono::seconds(1), [&] { return impl_->shared_watch_stop; })) {
    lock.unlock();
    if (impl_->shared->generation() > impl_->shared_generation) handle({{"verb", "status"}});
    lock.lock();
  }
}

policy::ViewSpecs Manager::views() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->all_views();
}

policy::ViewSpecs Manager::Impl::all_views() const {
  policy::ViewSpecs out;
  out.reserve(view_count);
  for (const auto& [app, specs] : views) out.insert(out.end(), specs.begin(), specs.end());
  return out;
}

void Manager::Impl::set_views(const policy::ViewSpecs& all) {
  views.clear();
  for (const auto& v : all) views[v.app].push_back(v);
  view_count = all.size();
}

ViewsDelta Manager::Impl::all_delta() const {
  ViewsDelta d;
  d.all = true;
  d.views = all_views();
  for (const auto& [app, specs] : views) d.apps.insert(app);
  return d;
}

Manager::Impl::Redelivery Manager::Impl::serve_all_again() {
  set_views(served_views(state));
  Redelivery r;
  r.delta = all_delta();
  if (!config.on_views_updated) r.views_now = r.delta->views;  // the views, built once
  r.ticket = ++tickets_issued;
  return r;
}

namespace {

// The apps whose views may differ between `before` and `after`: those whose record differs
// (added, changed or removed), those granted a share whose owner or trash changed, and every
// app when a quota changed (a view carries its app's and its share's limits: quotas are set
// rarely). Every other app's views are the same functions of the same inputs.
std::set<std::string> apps_touched(const State& before, const State& after, std::set<std::string>& records_changed) {
  const auto changed = [&](const std::string& app, const AppRef&) { records_changed.insert(app); };
  walk_apps(before, after, changed, changed, [&](const std::string& app, const AppRef& was, const AppRef& now) {
    if (!(was == now)) records_changed.insert(app);
  });
  std::set<std::string> touched = records_changed;
  // A quota, or a disk recorded or forgotten (disk.forget), may change any app's views.
  if (before.quotas != after.quotas || before.mounts != after.mounts) {
    for (const auto& [app, record] : after.apps) touched.insert(app);
    for (const auto& [app, record] : before.apps) touched.insert(app);
    return touched;
  }
  std::set<std::string> shares;
  for (const auto* m : {&before.shares, &after.shares}) {
    const auto& other = m == &before.shares ? after.shares : before.shares;
    for (const auto& [name, owner] : *m) {
      auto it = other.find(name);
      if (it == other.end() || !(it->second == owner)) shares.insert(name);
    }
  }
  for (const auto* m : {&before.share_trash, &after.share_trash}) {
    const auto& other = m == &before.share_trash ? after.share_trash : before.share_trash;
    for (const auto& [name, days] : *m) {
      auto it = other.find(name);
      if (it == other.end() || it->second != days) shares.insert(name);
    }
  }
  if (shares.empty()) return touched;
  for (const auto& [app, record] : after.apps) {
    for (const auto& g : effective_grants(record)) {
      if (g.kind == policy::GrantKind::shared && shares.contains(g.name)) touched.insert(app);
    }
  }
  return touched;
}

}  // namespace

void Manager::set_audit(common::AuditLog* log) { impl_->audit = log; }

Manager::Impl::SharedScope::SharedScope(Impl& impl) : impl_(impl) {
  if (!impl.shared) return;
  lock_.emplace(impl.shared->lock());
  before_ = impl.state;
  generation_ = impl.shared_generation;
  armed_ = true;
  impl.catch_up_shared();
}

Manager::Impl::SharedScope::~SharedScope() {
  if (!armed_) return;
  impl_.state = std::move(before_);
  impl_.shared_generation = generation_;
}

Manager::Impl::Committed Manager::Impl::commit(Outcome& out, const State& before, bool verb_changed,
                                               nlohmann::json& response) {
  // Views first: nothing may fail between the save and the swap. Only the apps the change
  // touched are built again (`views` are before's: the views served).
  std::set<std::string> records_changed;
  ViewsDelta delta;
  for (const auto& app : apps_touched(before, *out.next, records_changed)) {
    policy::ViewSpecs now;
    if (auto it = out.next->apps.find(app); it != out.next->apps.end()) now = served_views_of(*out.next, app, it->second);
    auto was = views.find(app);
    if (was == views.end() ? now.empty() : was->second == now) continue;
    delta.apps.insert(app);
    delta.views.insert(delta.views.end(), now.begin(), now.end());
  }
  try {
    if (shared && verb_changed) {
      shared->write(shared_generation + 1, *out.next);
      shared_generation++;
    }
    // The journal record compares only the apps whose record changed (against `state`: the
    // same as `before` without shared state).
    save(*out.next, &before == &state ? &records_changed : nullptr);
  } catch (const StateError& e) {
    const std::string error = e.what();
    if (!out.takes_away) {
      if (out.undo) out.undo();
      failed(error);
    }
    // In force now, saved by the worker once it can be (manager_impl.hpp).
    common::log(common::LogLevel::error, "STATE NOT SAVED, change in force in memory only until it is: " + error);
    unsaved = error;
    response["warning"] = "warning: " + error + "; the change is in force, and is saved as soon as there is room";
    start_worker();
  }
  apps_to_follow.insert(records_changed.begin(), records_changed.end());  // changed, added or removed
  if (audit) {
    // The views of the apps whose views changed, before and after (in app order, as all of
    // them would be): the others' give no grant record.
    policy::ViewSpecs views_before;
    for (const auto& app : delta.apps) {
      if (auto it = views.find(app); it != views.end()) views_before.insert(views_before.end(), it->second.begin(), it->second.end());
    }
    for (auto& r : state_changes(before, *out.next, views_before, delta.views)) audit->post(std::move(r));
  }
  Committed c;
  state = std::move(*out.next);
  if (!delta.apps.empty() || !out.killed.empty()) {
    for (const auto& app : delta.apps) {
      auto& mine = views[app];
      view_count -= mine.size();
      mine.clear();
    }
    for (const auto& v : delta.views) views[v.app].push_back(v);
    for (const auto& app : delta.apps) {
      if (views[app].empty()) views.erase(app);
      else view_count += views[app].size();
    }
    delta.killed = std::move(out.killed);
    if (!config.on_views_updated) c.views = all_views();
    c.delta = std::move(delta);
  }
  c.ticket = ++tickets_issued;  // every commit: its containers follow in commit order
  return c;
}

nlohmann::json Manager::handle(const nlohmann::json& request) {
  std::unique_lock state_lock(impl_->mutex, std::defer_lock);
  nlohmann::json response;
  Impl::Committed committed;
  bool json_format = false;
  try {
    const Request req = parse_request(request);
    json_format = req.json;
    state_lock.lock();
    Impl::SharedScope shared(*impl_);
    const State& before = shared.before();
    Outcome out = impl_->dispatch(req);
    response = ok_response(std::move(out.output));
    const bool verb_changed = out.next && *out.next != impl_->state;
    if (!out.next && impl_->shared && impl_->state != before) out.next = impl_->state;  // caught up only
    // Without shared state `before` is the state itself: compared once (a record the verb did
    // not change is the same object in both, AppRef: one pointer compare per app).
    const bool changed = &before == &impl_->state ? verb_changed : out.next && *out.next != before;
    if (changed) committed = impl_->commit(out, before, verb_changed, response);
    shared.committed();  // committed (or nothing to commit)
    if (out.after_commit) {
      try {
        out.after_commit();
      } catch (const std::exception& e) {
        // The change is saved; only the clean-up failed. Say so, and still tell the filesystem.
        response = error_response(kCodeRuntime, e.what());
      }
    }
  } catch (const RequestError& e) {
    response = error_response(e.code(), e.what());
  } catch (const std::exception& e) {
    response = error_response(kCodeRuntime, e.what());
  } catch (...) {
    response = error_response(kCodeRuntime, "internal error");
  }
  if (state_lock.owns_lock()) state_lock.unlock();
  if (committed.ticket != 0) {
    impl_->deliver(committed.ticket, committed.delta, committed.views);
    // The views are served now: the running containers of the apps changed follow them. The
    // change itself is done whatever happens there.
    try {
      report_attachment_problems(response, json_format, impl_->follow_grants(committed.ticket));
    } catch (const std::exception& e) {
      common::log(common::LogLevel::error, std::string("bringing attachments up to date: ") + e.what());
    }
  }
  return response;
}

void Manager::Impl::deliver(uint64_t ticket, const std::optional<ViewsDelta>& delta,
                            const std::optional<policy::ViewSpecs>& views_now) {
  {
    std::unique_lock lock(delivery_mutex);
    delivery_cv.wait(lock, [&] { return tickets_delivered + 1 == ticket; });
  }
  if (delta && (config.on_views_updated || (views_now && on_views_changed))) {
    try {
      if (config.on_views_updated) config.on_views_updated(*delta);
      else on_views_changed(*views_now, delta->killed);
    } catch (const std::exception& e) {
      common::log(common::LogLevel::error, std::string("ViewsChanged callback failed: ") + e.what());
    } catch (...) {
      common::log(common::LogLevel::error, "ViewsChanged callback failed");
    }
  }
  {
    std::lock_guard lock(delivery_mutex);
    tickets_delivered = ticket;
  }
  delivery_cv.notify_all();
}

int Manager::heal_attachments() {
  std::lock_guard lock(impl_->mutex);
  return impl_->heal();
}

namespace {

Outcome status(const Manager::Impl& mgr, const Request& req) {
  Args args(req, {});
  std::size_t view_count = mgr.view_count;
  nlohmann::json out = {{"version", PORTALFS_VERSION},
                        {"mountpoint", mgr.config.mountpoint},
                        {"storage_root", mgr.config.storage_root},
                        {"state_file", mgr.store.path()},
                        {"apps", mgr.state.apps.size()},
                        {"views", view_count},
                        {"attachments", mgr.state.attachments.size()},
                        {"state_saved", mgr.unsaved.empty()}};
  if (!mgr.unsaved.empty()) out["state_error"] = mgr.unsaved;
  if (mgr.root_store) {
    const StoreRecord& r = *mgr.root_store;
    nlohmann::json store = {{"path", r.path}, {"id", r.id}, {"fs_type", r.fs_type}, {"source", r.source},
                            {"online", mgr.store_offline.empty()}};
    if (!mgr.store_offline.empty()) store["problem"] = mgr.store_offline;
    out["store"] = std::move(store);
  }
  if (!mgr.state.mounts.empty()) {
    nlohmann::json mounts = nlohmann::json::array();
    for (const auto& m : mgr.state.mounts) {
      const auto off = mgr.mounts_offline.find(m.path);
      nlohmann::json one = {{"path", m.path}, {"mount_point", m.mount_point}, {"fs_type", m.fs_type},
                            {"source", m.source}, {"online", off == mgr.mounts_offline.end()}};
      if (!m.fsid.empty()) one["fsid"] = m.fsid;
      if (off != mgr.mounts_offline.end()) one["problem"] = off->second;
      mounts.push_back(std::move(one));
    }
    out["mounts"] = std::move(mounts);
  }
  out["quota"] = mgr.quota_status();
  if (mgr.status_provider) {
    try {
      out["filesystem"] = mgr.status_provider();
    } catch (const std::exception& e) {
      out["filesystem"] = {{"error", e.what()}};
    }
  }
  if (req.json) return {out.dump(2) + "\n"};
  std::string text = "portalfs " + std::string(PORTALFS_VERSION) + "\n";
  text += "mountpoint: " + mgr.config.mountpoint + "\n";
  text += "storage root: " + mgr.config.storage_root + "\n";
  text += "state file: " + mgr.store.path() + "\n";
  text += "apps: " + std::to_string(mgr.state.apps.size()) + "\n";
  text += "views: " + std::to_string(view_count) + "\n";
  text += "attachments: " + std::to_string(mgr.state.attachments.size()) + "\n";
  if (!mgr.unsaved.empty()) text += "state: NOT SAVED (" + mgr.unsaved + ")\n";
  if (mgr.root_store) {
    text += mgr.store_offline.empty()
                ? "store: online (" + mgr.root_store->path + ", store id " + mgr.root_store->id + ")\n"
                : "store: OFFLINE, views answer EIO (" + mgr.store_offline + ")\n";
  }
  for (const auto& [path, why] : mgr.mounts_offline) text += "mount: OFFLINE, views answer EIO (" + why + ")\n";
  text += quota_status_line(out["quota"]) + "\n";
  if (out.contains("filesystem") && out["filesystem"].is_object()) {
    for (const auto& item : out["filesystem"].items()) {
      const auto& v = item.value();
      text += "filesystem." + item.key() + ": " + (v.is_string() ? v.get<std::string>() : v.dump()) + "\n";
    }
  } else if (out.contains("filesystem")) {
    text += "filesystem: " + out["filesystem"].dump() + "\n";
  }
  return {text};
}

// The daemon's own verbs; the others are in the verb files (manager_impl.hpp).
constexpr Verb kManagerVerbs[] = {
    {"status", status},  // {}
};

}  // namespace

Outcome Manager::Impl::dispatch(const Request& req) {
  for (const std::span<const Verb> table :
       {app_verbs(), share_verbs(), storage_verbs(), trash_verbs(), quota_verbs(),
        std::span<const Verb>(kManagerVerbs)}) {
    for (const Verb& verb : table) {
      if (verb.name != req.verb) continue;
      return verb.read_only() ? verb.reads(*this, req) : verb.changes(*this, req);
    }
  }
  refuse("unknown verb " + describe_json(req.verb));
}

// ---- helpers shared by the verbs ---------------------------------------------------------------

std::string Manager::Impl::app_arg(const Args& args, std::string_view key) const {
  std::string app = args.str(key);
  if (auto expected = policy::check_app_name(app)) {
    args.bad(key, *expected + ", got " + describe_json(app));
  }
  return app;
}

const AppRecord& Manager::Impl::installed(const std::string& app) const {
  const auto it = state.apps.find(app);
  if (it == state.apps.end()) refuse("app " + app + " is not installed");
  return it->second;
}

StorageRoot Manager::Impl::open_root() const {
  if (!root_store) return StorageRoot(config.storage_root);
  // Never created here: a missing root is a disk not mounted (its mount point is gone too).
  StorageRoot root(config.storage_root, /*create=*/false);
  // Checked on the fd that is then used: no window between the check and the writes.
  const std::string why = store_mismatch(*root_store, probe_store_fd(root.fd(), /*describe_mount=*/true));
  if (!why.empty()) throw ProvisionError("storage root offline, nothing written: " + why);
  return root;
}

// On btrfs an app's data root (apps/<app>, all its data directories) is a subvolume, made with
// the first of them, so that a quota on the app is a qgroup limit (mountmgr/quota.hpp). Root's,
// 0700, as the directories made on the way are. Elsewhere the walk makes it a plain directory.
void Manager::Impl::ensure_app_root(const StorageRoot& root, const std::string& app) const {
  if (!common::on_btrfs(root.fd())) return;
  LeafSpec leaf;
  leaf.owner = policy::Owner{0, 0};
  leaf.mode = 0700;
  leaf.subvolume = true;
  ensure_dir(root, app_dir_components(app, config.apps_dir), leaf);
}

void Manager::Impl::provision_app(const State& next, const std::string& app, AppRecord& record,
                                  const std::vector<DataDirRecord>& previous) const {
  const StorageRoot root = open_root();
  std::vector<DataDirRecord> dirs;
  for (const auto& grant : effective_grants(record)) {
    if (grant.kind == policy::GrantKind::shared) {
      const auto share = next.shares.find(grant.name);
      LeafSpec leaf;
      if (share != next.shares.end()) leaf.owner = share->second;
      leaf.subvolume = !next.share_trash.contains(grant.name);  // see set_share_trash()
      ensure_dir(root, share_dir_components(grant.name), leaf);
      continue;
    }
    if (grant.kind != policy::GrantKind::data) continue;
    LeafSpec leaf;
    leaf.owner = grant.owner;
    leaf.version_marker = record.version;
    // A compose app's tree may be Freeshard's own (app_data/<app>/...): taken as it is.
    leaf.adopt_unmarked = !record.storage_app.empty();
    const std::string& owner_app = record.storage_app.empty() ? app : record.storage_app;
    ensure_app_root(root, owner_app);
    const Ensured ensured = ensure_dir(root, data_dir_components(owner_app, grant.name, config.apps_dir), leaf);
    DataDirRecord rec{grant.name, record.version, false};
    const auto old = std::find_if(previous.begin(), previous.end(),
                                  [&](const DataDirRecord& d) { return d.name == grant.name; });
    if (ensured.repair) {
      common::log(common::LogLevel::warn, "app " + app + ": data dir " + grant.name + " was unfinished (" +
                                              common::escape_for_message(*ensured.repair) + "); finished it");
    }
    if (!ensured.created) {
      // Existing data: it keeps the version that made it, from our records or (after a remove
      // without purge) from its marker; an unfinished one counts as made by this version.
      if (old != previous.end()) {
        rec.created_by_version = old->created_by_version;
      } else if (ensured.marker) {
        rec.created_by_version = *ensured.marker;
      }
    }
    dirs.push_back(std::move(rec));
  }
  make_mount_points(root, app, record);
  for (const auto& old : previous) {
    const bool kept = std::any_of(dirs.begin(), dirs.end(), [&](const DataDirRecord& d) { return d.name == old.name; });
    if (!kept) {
      DataDirRecord removed = old;
      removed.removed = true;
      dirs.push_back(std::move(removed));
    }
  }
  record.data_dirs = std::move(dirs);
}

void Manager::Impl::make_mount_points(const StorageRoot& root, const std::string& app, const AppRecord& record) const {
  const auto grants = effective_grants(record);
  const std::string& owner_app = record.storage_app.empty() ? app : record.storage_app;
  for (const auto& inner : grants) {
    // The innermost data dir mounted above this grant's container path.
    const policy::Grant* outer = nullptr;
    for (const auto& g : grants) {
      if (g.kind != policy::GrantKind::data || g.container_path == inner.container_path ||
          !path_within(inner.container_path, g.container_path)) {
        continue;
      }
      if (!outer || g.container_path.size() > outer->container_path.size()) outer = &g;
    }
    if (!outer) continue;
    // Each directory on the way, owned as the data dir is (never root-only inside an app's dir).
    LeafSpec leaf;
    leaf.owner = outer->owner;
    std::string name = outer->name;
    const std::string rest = inner.container_path.substr(outer->container_path == "/" ? 1 : outer->container_path.size() + 1);
    for (const auto& part : split_path(rest)) {
      name += "/" + part;
      ensure_dir(root, data_dir_components(owner_app, name, config.apps_dir), leaf);
    }
  }
}

std::string Manager::Impl::mounts_output(const std::string& app, const AppRecord& record, bool json) const {
  const auto entries = mount_entries(config.mountpoint, app, effective_grants(record));
  if (json) return render_mounts(entries, MountStyle::json);
  try {
    return render_mounts(entries, MountStyle::docker);
  } catch (const std::invalid_argument&) {
    // The app is fine (the filesystem and OCI take any path); only -v can't say where. A note,
    // not a refusal, and without the path: someone may paste this output into `docker run`.
    return "app " + app + ": a mount path holds ':' or whitespace, which docker -v can't express; " +
           "portalctl mounts " + app + " --format oci gives the mounts\n";
  }
}

void Manager::Impl::check_no_clash(const std::string& app, const AppRecord& record) {
  const auto grants = effective_grants(record);
  for (std::size_t i = 0; i < grants.size(); ++i) {
    for (std::size_t j = i + 1; j < grants.size(); ++j) {
      const auto& a = grants[i];
      const auto& b = grants[j];
      if (a.container_path == b.container_path) {
        refuse("app " + app + ": " + a.container_path + " would be mounted twice (" + describe_grant(a) + " and " +
               describe_grant(b) + ")");
      }
      if (a.kind == b.kind && policy::view_dir_name(a) == policy::view_dir_name(b)) {
        refuse("app " + app + ": " + describe_grant(a) + " is already mounted at " + a.container_path);
      }
    }
  }
}

void require_share(const State& state, const std::string& share) {
  if (!state.shares.contains(share)) {
    refuse("share '" + share + "' does not exist; create it with: portalctl share create " + share);
  }
}

std::string not_the_recorded_process(const Attachment& attachment, const AttachOps& ops) {
  if (!attachment.process) {
    return "recorded without the process's start time and mount namespace (by an older portalfs), so it can't be "
           "told from another process with that pid";
  }
  return identity_change(*attachment.process, ops.identify(attachment.pid));
}

std::string describe_grant(const policy::Grant& grant) {
  switch (grant.kind) {
    case policy::GrantKind::data: return "data dir " + grant.name;
    case policy::GrantKind::shared: return "share " + grant.name;
    case policy::GrantKind::host: return "storage mount " + grant.name;
  }
  return grant.name;
}

}  // namespace portalfs::mountmgr
