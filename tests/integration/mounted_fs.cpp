// SPDX-License-Identifier: MIT
#include "tests/integration/mounted_fs.hpp"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>
#include <grp.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <stdexcept>
#include <thread>

namespace portalfs::testutil {

namespace {

// The daemon runs inside the test process, so a bug that crashes it crashes the test binary.
// Worse, the process then cannot even die: a thread waiting for the answer to a request the
// daemon already took waits uninterruptibly, and the daemon that should answer is the dying
// process itself. So the live mounts are kept in fixed slots (mountpoint and connection
// number) that a fatal-signal handler can read: it aborts each connection through fusectl
// (failing the stuck requests) and detaches the mount, with plain syscalls only.
constexpr int kSlots = 32;
char g_mountpoints[kSlots][PATH_MAX];
std::atomic<int> g_connections[kSlots];
std::atomic<bool> g_slot_used[kSlots];
std::mutex g_slots_mutex;
char g_fusectl_dir[64];  // where to mount fusectl when /sys/fs/fuse/connections is absent
constexpr int kFatalSignals[] = {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL};

/// "<root>/<n>/abort" into `out` without allocating (usable in a signal handler).
void abort_path(char* out, size_t size, const char* root, unsigned n) {
  char digits[16];
  int len = 0;
  do {
    digits[len++] = static_cast<char>('0' + n % 10);
    n /= 10;
  } while (n && len < 15);
  size_t pos = 0;
  for (const char* r = root; *r && pos + 1 < size; ++r) out[pos++] = *r;
  if (pos + 1 < size) out[pos++] = '/';
  while (len > 0 && pos + 1 < size) out[pos++] = digits[--len];
  for (const char* r = "/abort"; *r && pos + 1 < size; ++r) out[pos++] = *r;
  out[pos] = '\0';
}

bool write_abort(const char* root, unsigned n) {
  char path[128];
  abort_path(path, sizeof(path), root, n);
  int fd = ::open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = ::write(fd, "1", 1) == 1;
  ::close(fd);
  return ok;
}

/// Ends a FUSE connection, whatever still uses its mount: writes to its "abort" file in the
/// fusectl file system (mounted on a private directory when /sys/fs/fuse/connections is not
/// there). Only syscalls: safe in a signal handler.
void abort_connection(unsigned n) {
  if (write_abort("/sys/fs/fuse/connections", n)) return;
  ::mkdir(g_fusectl_dir, 0700);
  if (::mount("fusectl", g_fusectl_dir, "fusectl", 0, nullptr) == 0) {
    write_abort(g_fusectl_dir, n);
    ::umount2(g_fusectl_dir, MNT_DETACH);
  }
  ::rmdir(g_fusectl_dir);
}

void abort_mounts_and_die(int sig) {
  for (int i = 0; i < kSlots; ++i) {
    if (!g_slot_used[i].load()) continue;
    if (int c = g_connections[i].load(); c >= 0) abort_connection(static_cast<unsigned>(c));
    ::umount2(g_mountpoints[i], MNT_DETACH);
  }
  ::raise(sig);  // the handler was reset (SA_RESETHAND): this one takes the default action
}

void install_crash_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    std::snprintf(g_fusectl_dir, sizeof(g_fusectl_dir), "/tmp/portalfs-fusectl-%d",
                  static_cast<int>(::getpid()));
    struct sigaction sa {};
    sa.sa_handler = abort_mounts_and_die;
    sa.sa_flags = SA_RESETHAND | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    for (int sig : kFatalSignals) ::sigaction(sig, &sa, nullptr);
  });
}

int claim_slot(const std::string& mountpoint, int connection) {
  if (mountpoint.size() >= PATH_MAX) return -1;
  std::lock_guard lock(g_slots_mutex);
  for (int i = 0; i < kSlots; ++i) {
    if (!g_slot_used[i].load()) {
      std::memcpy(g_mountpoints[i], mountpoint.c_str(), mountpoint.size() + 1);
      g_connections[i].store(connection);
      g_slot_used[i].store(true);
      return i;
    }
  }
  return -1;
}

void release_slot(int slot) {
  if (slot < 0) return;
  std::lock_guard lock(g_slots_mutex);
  g_slot_used[slot].store(false);
}

}  // namespace

const char* to_string(ViewKind kind) {
  switch (kind) {
    case ViewKind::data: return "data";
    case ViewKind::shared_map: return "shared_map";
    case ViewKind::shared_squash: return "shared_squash";
    case ViewKind::shared_ro: return "shared_ro";
  }
  return "?";
}

MountedFs::MountedFs(fuse::Options options, std::chrono::seconds watchdog) : options_(options) {
  // These tests act as an app's uid through the host path of a view, standing in for a
  // container's bind mount, so the directories above the views are open to all here (portalfsd
  // closes them: tests/integration/host_hardening_test.cpp).
  options_.top_mode = 0555;
  std::filesystem::create_directories(storage());
  std::filesystem::create_directories(mountpoint());
  ::chmod(dir_.path().c_str(), 0755);  // so forked non-root callers can reach the mount
  fs_ = std::make_unique<fuse::Filesystem>(options_);
  if (::access("/dev/fuse", R_OK | W_OK) != 0) {
    error_ = "/dev/fuse is not accessible";
    return;
  }
  if (const char* env = std::getenv("PORTALFS_MOUNT_WATCHDOG_SECONDS"); env && *env) {
    watchdog = std::chrono::seconds(std::atol(env));
  }
  watchdog_seconds_ = watchdog;
  watchdog_deadline_ = std::chrono::steady_clock::now() + watchdog;
  mount();
}

MountedFs::~MountedFs() { unmount(); }

void MountedFs::mount() {
  try {
    session_ = std::make_unique<fuse::Session>(*fs_, fuse::SessionOptions{mountpoint(), 0, false});
  } catch (const std::exception& e) {
    error_ = e.what();
    return;
  }
  install_crash_handler();
  loop_done_.store(false);
  loop_ = std::thread([this] {
    session_->run();
    loop_done_.store(true);
  });
  // The connection's number (the minor of the mount's st_dev), in case it must be aborted.
  connection_ = -1;
  struct stat st {};
  if (::stat(mountpoint().c_str(), &st) == 0) connection_ = static_cast<int>(minor(st.st_dev));
  slot_ = claim_slot(mountpoint(), connection_);
  watchdog_stop_ = false;  // no watchdog thread runs here: unmount() joined the last one
  watchdog_ = std::thread([this] {
    std::unique_lock lock(watchdog_mutex_);
    if (watchdog_cv_.wait_until(lock, watchdog_deadline_, [this] { return watchdog_stop_; })) return;
    std::fprintf(stderr, "MountedFs: still mounted after %lld s, aborting the FUSE connection at %s\n",
                 static_cast<long long>(watchdog_seconds_.count()), mountpoint().c_str());
    if (connection_ >= 0) abort_connection(static_cast<unsigned>(connection_));
  });
}

void MountedFs::unmount() {
  if (!session_) return;
  {
    std::lock_guard lock(watchdog_mutex_);
    watchdog_stop_ = true;
  }
  watchdog_cv_.notify_all();
  watchdog_.join();
  session_->stop();
  // The lazy unmount ends the loop once nothing uses the mount. An fd a test left open (or a
  // request the daemon never answered) would keep it alive forever: abort the connection
  // after a while instead of hanging the test binary, and fail the test that did it.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!loop_done_.load() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (!loop_done_.load()) {
    ADD_FAILURE() << "the mount at " << mountpoint()
                  << " was still in use 10 s after unmounting (an fd left open, or a request "
                     "never answered); aborting the FUSE connection";
    if (connection_ >= 0) abort_connection(static_cast<unsigned>(connection_));
  }
  loop_.join();
  session_.reset();
  release_slot(slot_);
  slot_ = -1;
}

std::vector<std::string> MountedFs::restart() {
  if (!session_) throw std::runtime_error("MountedFs::restart: not mounted (" + error_ + ")");
  unmount();
  // The old daemon is gone entirely (portalfsd's Filesystem lives as long as its process)...
  fs_.reset();
  // ...and the new one gets its views before it mounts, as portalfsd's start-up does.
  fs_ = std::make_unique<fuse::Filesystem>(options_);
  auto errors = fs_->set_views(views_);
  mount();
  if (!session_) throw std::runtime_error("MountedFs::restart: cannot mount again: " + error_);
  return errors;
}

policy::ViewSpec MountedFs::preset(const std::string& app, ViewKind kind, const std::string& name,
                                   const std::string& backing) {
  policy::ViewSpec v;
  v.app = app;
  v.dir_name = name;
  v.backing = backing;
  v.kind = kind == ViewKind::data ? policy::GrantKind::data : policy::GrantKind::shared;
  v.access = kind == ViewKind::shared_ro ? policy::Access::read : policy::Access::read_write;
  if (kind == ViewKind::shared_map) {
    std::string err;
    auto range = policy::IdMap::parse_range("0:100000:65536", &err);
    v.ids.uids = *policy::IdMap::make({*range}, &err);
    v.ids.gids = v.ids.uids;
  }
  if (kind == ViewKind::shared_squash) {
    v.ids.squash = policy::Squash{2000, 2000, 1000, 1000};
  }
  return v;
}

policy::ViewSpec MountedFs::shared_view(const std::string& app, const std::string& name,
                                       const std::string& backing, policy::Access access) const {
  policy::ViewSpec v = preset(app, ViewKind::data, name, backing);
  v.kind = policy::GrantKind::shared;
  v.access = access;
  v.anchor = storage();
  return v;
}

std::string MountedFs::add_view(const std::string& app, ViewKind kind, const std::string& name,
                                const std::string& backing) {
  std::string b = backing.empty() ? storage() + "/" + app + "-" + name : backing;
  std::filesystem::create_directories(b);
  auto spec = preset(app, kind, name, b);
  if (b.starts_with(storage() + "/")) spec.anchor = storage();
  if (kind == ViewKind::shared_squash) ::chown(b.c_str(), 2000, 2000);
  views_.push_back(spec);
  set_views(views_);
  return path(spec);
}

void MountedFs::set_views(const policy::ViewSpecs& views, const policy::ViewSpecs& killed) {
  views_ = views;
  auto errors = fs_->set_views(views, killed);
  if (!errors.empty()) throw std::runtime_error(errors.front());
}

std::string MountedFs::path(const policy::ViewSpec& view) const {
  return mountpoint() + "/apps/" + view.app + "/" + policy::to_string(view.kind) + "/" + view.dir_name;
}

int run_as(uid_t uid, gid_t gid, const std::function<int()>& fn) {
  pid_t pid = ::fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    // A crash in the child must not detach the parent's mounts (same mount namespace).
    for (int sig : kFatalSignals) ::signal(sig, SIG_DFL);
    if (::setgroups(0, nullptr) != 0 || ::setresgid(gid, gid, gid) != 0 ||
        ::setresuid(uid, uid, uid) != 0) {
      ::_exit(120);
    }
    ::_exit(fn());
  }
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace portalfs::testutil
