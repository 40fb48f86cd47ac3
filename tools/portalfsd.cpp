// SPDX-License-Identifier: MIT
// portalfsd: mounts the portalfs filesystem, serves the control socket, and keeps the views
// in step with the mount manager's state. See README.md for the options.
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <thread>

#include "common/audit.hpp"
#include "common/dirs.hpp"
#include "common/log.hpp"
#include "fuse/backing_fs.hpp"
#include "fuse/filesystem.hpp"
#include "fuse/session.hpp"
#include "mountmgr/control_server.hpp"
#include "mountmgr/manager.hpp"
#include "tools/example_manifest.hpp"
#include "tools/exit_codes.hpp"
#include "tools/options.hpp"
#include "tools/service.hpp"

namespace {

using portalfs::tools::ExitCode;
using portalfs::tools::to_int;
namespace log = portalfs::common;

// A refusal to start: one line on stderr and the exit code.
struct StartError {
  ExitCode code;
  std::string message;
};

void check_environment(const portalfs::tools::DaemonOptions& o, std::optional<gid_t> admin_gid) {
  namespace fs = std::filesystem;
  // Rootless (README "Rootless"): the default paths are root's (and one daemon's per machine),
  // so an ordinary user names their own; nothing is guessed for them.
  const portalfs::tools::DaemonOptions defaults;
  if (::geteuid() != 0 &&
      (o.storage_root == defaults.storage_root || o.state_dir == defaults.state_dir ||
       o.mountpoint == defaults.mountpoint || o.socket == defaults.socket)) {
    throw StartError{ExitCode::usage,
                     "run as uid " + std::to_string(::geteuid()) +
                         " (not root): give --storage-root, --state-dir, --mountpoint and --socket "
                         "of your own (e.g. under ~/.local/share/portalfs and $XDG_RUNTIME_DIR/portalfs); "
                         "the defaults are root's"};
  }
  if (::access("/dev/fuse", R_OK | W_OK) != 0) {
    throw StartError{ExitCode::runtime,
                     "/dev/fuse is missing or not accessible (" + std::string(std::strerror(errno)) +
                         (::geteuid() == 0 || errno == ENOENT
                              ? "): load the fuse module (modprobe fuse) or give the container --device /dev/fuse"
                              : "): ordinary users need it 0666, as udev's rule makes it (chmod 0666 /dev/fuse)")};
  }
  std::error_code ec;
  if (fs::exists(o.storage_root, ec) && !fs::is_directory(o.storage_root, ec)) {
    throw StartError{ExitCode::usage, "storage root " + o.storage_root + " is not a directory"};
  }
  // The storage root is made (on a first start) or checked against its recorded file system
  // by the mount manager (mountmgr/store.hpp): a missing one may be a disk not mounted yet,
  // and nothing is created under its mount point.
  // The state dir is root's alone; directories made for the mountpoint (/run/portalfs) also
  // the admin group's, if there is one.
  if (auto err = portalfs::common::make_dirs(o.state_dir, 0700); !err.empty()) {
    throw StartError{ExitCode::runtime, "state dir: " + err};
  }

  using portalfs::fuse::MountpointState;
  switch (portalfs::fuse::probe_mountpoint(o.mountpoint)) {
    case MountpointState::missing:
      if (auto err = portalfs::common::make_dirs(o.mountpoint, admin_gid ? 0750 : 0700,
                                                 admin_gid.value_or(static_cast<gid_t>(-1)));
          !err.empty()) {
        throw StartError{ExitCode::runtime, "mountpoint: " + err};
      }
      break;
    case MountpointState::stale_portalfs: {
      log::log(log::LogLevel::warn, "clearing the dead portalfs mount at " + o.mountpoint +
                                        " (a previous daemon crashed)");
      std::string err = portalfs::fuse::clear_stale_mount(o.mountpoint);
      if (!err.empty()) throw StartError{ExitCode::runtime, err};
      break;
    }
    case MountpointState::live_portalfs:
      throw StartError{ExitCode::runtime, "another portalfsd already serves " + o.mountpoint +
                                              "; stop it first"};
    case MountpointState::other_mount:
      throw StartError{ExitCode::runtime, "mountpoint " + o.mountpoint +
                                              " is busy with another mount; unmount it or pick "
                                              "another --mountpoint"};
    case MountpointState::free:
      break;
  }
}

// The open-file limit and the O_PATH fd cache sized from it. Logged only once mounted: a
// refusal to start (bad state, busy mountpoint) must stay the one line on stderr.
struct FdBudget {
  rlim_t limit = 0;
  size_t cache = 0;
  size_t per_app = 0;  // files one app may hold open (Options::open_files_per_app)
  std::string raise_error;  // why the soft limit could not be raised, if it could not
};

// Raises the soft open-file limit to the hard one (as mergerfs does) and sizes the fd cache to
// half of it: the other half serves open files, the fuse device, sockets and the cache's own
// re-opens. With a cache larger than the limit, lookups fail with EMFILE while evicting cached
// fds (re-opened by handle) would serve them.
FdBudget fd_budget() {
  constexpr rlim_t kMin = 64, kMax = 8192;  // 8192: Options' default
  FdBudget out;
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    out.limit = RLIM_INFINITY;
    out.cache = kMax;
    return out;
  }
  if (limit.rlim_cur < limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) {
      limit = raised;
    } else {
      out.raise_error = std::strerror(errno);
    }
  }
  out.limit = limit.rlim_cur;
  out.cache = static_cast<size_t>(std::clamp(limit.rlim_cur / 2, kMin, kMax));
  // Half of what the cache leaves: whatever one app holds open, the others keep the other half
  // (its open files' O_PATH fds come out of the cache, which evicts).
  const rlim_t left = limit.rlim_cur == RLIM_INFINITY ? 2 * kMax
                      : limit.rlim_cur > out.cache   ? limit.rlim_cur - out.cache
                                                     : 0;
  out.per_app = static_cast<size_t>(std::max<rlim_t>(16, left / 2));
  return out;
}

// Inodes one app may have cached (fuse/inode_shares.hpp). A fixed number, not one derived from
// the open-file limit: an inode costs the daemon memory (~150 bytes with its hash entry), not
// an fd, as its O_PATH fd lives in the bounded cache (fd_budget) and is re-opened by handle.
// 2^18 is ~40 MB per app, far above an app's working set, and what a find over a big tree
// leaves in the kernel's dentry cache stops there. Without handles (a rootless daemon) each
// inode pins an fd, and fuse::Filesystem caps the share at the open-file share.
constexpr size_t kInodesPerApp = size_t{1} << 18;

void log_fd_budget(const FdBudget& b) {
  if (!b.raise_error.empty()) {
    log::log(log::LogLevel::warn, "cannot raise the open-file limit to the hard limit: " + b.raise_error);
  }
  const std::string limit = b.limit == RLIM_INFINITY ? "unlimited" : std::to_string(b.limit);
  log::log(log::LogLevel::info, "open-file limit " + limit + ": caching at most " + std::to_string(b.cache) +
                                    " O_PATH fds; each app may hold " + std::to_string(b.per_app) + " files open");
}

// Each app's open files and cached inodes, and its shares of them (a limit of 0: none).
nlohmann::json app_shares_status(portalfs::fuse::Filesystem& fs) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [app, s] : fs.app_shares()) {
    out[app] = {{"open_files", s.open_files},
                {"open_files_limit", s.open_files_limit},
                {"inodes", s.inodes},
                {"inodes_limit", s.inodes_limit}};
  }
  return out;
}

nlohmann::json filesystem_status(portalfs::fuse::Filesystem& fs) {
  auto s = fs.stats();
  utsname u{};
  ::uname(&u);
  return {{"libfuse", fuse_pkgversion()},
          {"kernel", u.release},
          {"inodes", s.inodes},
          {"cached_fds", s.cached_fds},
          {"fd_cache_capacity", s.fd_cache_capacity},
          {"views", s.views},
          {"passthrough", fs.passthrough().active()},
          {"passthrough_files", s.passthrough_files},
          {"request_timeout", fs.session_io().request_timeout()},
          {"fuse_transport", fs.session_io().transport()},
          {"uring_requests", fs.session_io().uring_requests()},
          {"events_queued", s.events_queued},
          {"app_shares", app_shares_status(fs)},
          // The first counts of limits portalfsd accounts itself (fuse/quota_account.hpp).
          {"quota_count", fs.quota_progress().empty() ? "done" : fs.quota_progress()}};
}

// Whether the mount at `mountpoint` is this filesystem and answers: statfs waits until the
// loop serves it, so it returns once the mount is usable (or the mount is gone).
bool mount_answers(const std::string& mountpoint) {
  constexpr decltype(statfs::f_type) kFuseMagic = 0x65735546;
  struct statfs st {};
  return ::statfs(mountpoint.c_str(), &st) == 0 && st.f_type == kFuseMagic;
}

void install_example(portalfs::mountmgr::Manager& manager) {
  nlohmann::json req = {{"verb", "app.install"},
                        {"format", "text"},
                        {"args", {{"manifest", portalfs::tools::kExampleManifest},
                                  {"source", "examples/notes.json"}}}};
  auto resp = manager.handle(req);
  if (!resp.value("ok", false)) {
    log::log(log::LogLevel::error, "example app: " + resp.value("error", std::string("failed")));
    return;
  }
  std::cout << "example app 'notes' installed; its mounts:\n"
            << resp.value("output", std::string()) << std::flush;
}

// The filesystem's options: the command line's, and the fd budget this process has.
portalfs::fuse::Options filesystem_options(const portalfs::tools::DaemonOptions& o, const FdBudget& fds,
                                           std::optional<gid_t> admin_gid) {
  portalfs::fuse::Options fs_options;
  fs_options.fd_cache = fds.cache;
  fs_options.open_files_per_app = fds.per_app;
  fs_options.open_files_of = o.open_files_of;
  fs_options.inodes_per_app = o.inodes_per_app != 0 ? o.inodes_per_app : kInodesPerApp;
  fs_options.inodes_of = o.inodes_of;
  fs_options.passthrough = o.passthrough;
  fs_options.request_timeout = o.request_timeout;
  fs_options.io_uring = o.io_uring;
  fs_options.top_mode = admin_gid ? 0550 : 0500;
  fs_options.top_gid = admin_gid.value_or(0);
  fs_options.provenance = o.provenance;
  fs_options.events = o.events;
  // Said once at start: what a storage root on another FUSE file system (GlusterFS) changes.
  for (const auto& line : portalfs::fuse::fit_to_backing(fs_options, portalfs::fuse::probe_backing_fs(o.storage_root))) {
    log::log(log::LogLevel::warn, line);
  }
  return fs_options;
}

// The manager of the state, wired to `fs`: the views it decides are the ones `fs` serves, and
// the usage `fs` accounts is what it reports. A state it can't read is a usage error.
std::unique_ptr<portalfs::mountmgr::Manager> make_manager(const portalfs::tools::DaemonOptions& o,
                                                          portalfs::fuse::Filesystem& fs) {
  portalfs::mountmgr::ManagerConfig cfg;
  cfg.storage_root = o.storage_root;
  cfg.state_dir = o.state_dir;
  cfg.mountpoint = o.mountpoint;
  cfg.recover_from_backup = o.recover_from_backup;
  cfg.shared_state = o.shared_state;
  cfg.apps_dir = o.layout == "freeshard" ? "app_data" : "apps";
  cfg.trash_purge_interval = std::chrono::seconds(o.trash_purge_interval);
  // Only the views of the apps a change touched go to the filesystem: a grant to one app costs
  // that app's views, not every view served.
  cfg.on_views_updated = [&fs](const portalfs::mountmgr::ViewsDelta& d) {
    const auto errors = d.all ? fs.set_views(d.views, d.killed) : fs.update_views(d.apps, d.views, d.killed);
    for (const auto& e : errors) log::log(log::LogLevel::error, e);
  };
  cfg.quota_ops.accounted = [&fs](const std::string& key) -> std::optional<portalfs::mountmgr::QuotaUsage> {
    auto u = fs.quota_usage(key);
    if (!u) return std::nullopt;
    return portalfs::mountmgr::QuotaUsage{u->bytes, u->inodes, 0, 0};
  };
  try {
    return std::make_unique<portalfs::mountmgr::Manager>(
        cfg,
        [&fs](const portalfs::policy::ViewSpecs& views, const portalfs::policy::ViewSpecs& killed) {
          for (const auto& e : fs.set_views(views, killed)) log::log(log::LogLevel::error, e);
        },
        [&fs] { return filesystem_status(fs); });
  } catch (const portalfs::mountmgr::StateError& e) {
    throw StartError{ExitCode::usage, e.what()};
  }
}

// What the operator should know once, before the daemon serves.
void log_start(const portalfs::tools::DaemonOptions& o, const FdBudget& fds, portalfs::fuse::Filesystem& fs) {
  log_fd_budget(fds);
  for (const auto& [app, n] : o.open_files_of) {
    log::log(log::LogLevel::info, "app " + app + " may hold " + std::to_string(n) + " files open");
  }
  log::log(log::LogLevel::info, "each app may have " + std::to_string(fs.options().inodes_per_app) + " inodes cached");
  for (const auto& [app, n] : fs.options().inodes_of) {
    log::log(log::LogLevel::info, "app " + app + " may have " + std::to_string(n) + " inodes cached");
  }
  for (const auto& line : fs.privileges().missing()) log::log(log::LogLevel::warn, "rootless: " + line);
}

int run(const portalfs::tools::DaemonOptions& o) {
  log::set_log_level(o.log_level);
  std::optional<gid_t> admin_gid;
  if (!o.admin_group.empty()) admin_gid = portalfs::tools::resolve_group("portalfsd", o.admin_group);
  check_environment(o, admin_gid);

  FdBudget fds = fd_budget();
  if (o.open_files_per_app != 0) fds.per_app = o.open_files_per_app;
  portalfs::fuse::Filesystem fs(filesystem_options(o, fds, admin_gid));
  std::unique_ptr<portalfs::mountmgr::Manager> manager = make_manager(o, fs);
  for (const auto& e : fs.set_views(manager->views())) log::log(log::LogLevel::error, e);

  portalfs::tools::ServiceNotifier service;
  service.status("mounting " + o.mountpoint);
  auto session = std::make_unique<portalfs::fuse::Session>(
      fs, portalfs::fuse::SessionOptions{o.mountpoint, o.threads, o.log_level == log::LogLevel::debug});
  session->install_signal_handlers();
  log_start(o, fds, fs);
  if (!o.foreground && ::daemon(0, 0) != 0) {
    throw StartError{ExitCode::runtime, std::string("cannot go to the background: ") + std::strerror(errno)};
  }

  // Before any thread starts (threads inherit it): without CAP_SYS_RESOURCE in effect the
  // kernel holds the daemon's writes, passthrough files included, to the project quotas.
  if (auto why = portalfs::mountmgr::drop_quota_override(); !why.empty()) {
    log::log(log::LogLevel::warn, "cannot give up CAP_SYS_RESOURCE, quotas do not bind the daemon's writes: " + why);
  }
  // Threads start only now: daemon() forks, and a fork keeps only the calling thread.
  // The audit log's writer is one of them. It is destroyed (writing what is queued) when run()
  // returns: after the session's loop and the control server stopped, so nothing posts any more.
  std::unique_ptr<portalfs::common::AuditLog> audit;
  if (o.audit) {
    audit = std::make_unique<portalfs::common::AuditLog>(o.state_dir + "/audit");
    fs.set_audit(audit.get());
    manager->set_audit(audit.get());
  }
  manager->start();  // empties the trash of purges and prunes a stop interrupted
  portalfs::mountmgr::ControlServer server(o.socket, admin_gid,
                                           [&](const nlohmann::json& r) { return manager->handle(r); });
  server.start();
  log::log(log::LogLevel::info, "serving " + o.mountpoint + " (storage " + o.storage_root +
                                    ", control socket " + o.socket + ")");

  // Readiness, healing and the example need the filesystem answering: run them beside the loop.
  std::jthread after_mount([&] {
    if (!mount_answers(o.mountpoint)) return;  // the loop ended before serving
    service.ready("serving " + o.mountpoint + ": " + std::to_string(manager->views().size()) + " views");
    service.start_watchdog([&o] { return mount_answers(o.mountpoint); });
    int healed = manager->heal_attachments();
    if (healed > 0) log::log(log::LogLevel::info, "re-attached " + std::to_string(healed) + " container mount set(s)");
    if (o.example) install_example(*manager);
  });
  // A stop signal (SIGTERM, SIGINT, SIGHUP, SIGQUIT) ends the loop with 0: a normal stop.
  int rc = session->run();
  service.stopping();
  // Unmounted before the threads beside the loop are joined: one may wait for the mount's
  // answer to a request the ended loop will never give (a stop right after the start), and
  // the unmount fails it.
  log::log(log::LogLevel::info, "stopped; unmounting " + o.mountpoint);
  session.reset();
  after_mount.join();
  server.stop();
  return rc >= 0 ? 0 : to_int(ExitCode::runtime);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(portalfs::tools::parse_daemon_options(argc, argv, portalfs::tools::read_config_file));
  } catch (const portalfs::tools::ExitRequest& e) {
    std::cout << e.output();
    return e.code();
  } catch (const portalfs::tools::UsageError& e) {
    std::cerr << e.what() << "\n";
    return to_int(ExitCode::usage);
  } catch (const StartError& e) {
    std::cerr << "portalfsd: " << e.message << "\n";
    return to_int(e.code);
  } catch (const std::exception& e) {
    std::cerr << "portalfsd: " << e.what() << "\n";
    return to_int(ExitCode::runtime);
  }
}
