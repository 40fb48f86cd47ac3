// SPDX-License-Identifier: MIT
#include "tests/integration/mounted_fs.hpp"

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
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <stdexcept>
#include <thread>

namespace portalfs::testutil {

namespace {

// The daemon runs inside the test process, so a bug that crashes it crashes the test binary,
// and a dead FUSE mount ("Transport endpoint is not connected") would stay behind. The live
// mountpoints are kept in fixed slots a fatal-signal handler can read, and it detaches them
// before the process dies. umount2 is a plain syscall, safe in a signal handler.
constexpr int kSlots = 32;
char g_mountpoints[kSlots][PATH_MAX];
std::atomic<bool> g_slot_used[kSlots];
std::mutex g_slots_mutex;
constexpr int kFatalSignals[] = {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL};

void detach_mounts_and_die(int sig) {
  for (int i = 0; i < kSlots; ++i) {
    if (g_slot_used[i].load()) ::umount2(g_mountpoints[i], MNT_DETACH);
  }
  ::raise(sig);  // the handler was reset (SA_RESETHAND): this one takes the default action
}

void install_crash_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_handler = detach_mounts_and_die;
    sa.sa_flags = SA_RESETHAND | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    for (int sig : kFatalSignals) ::sigaction(sig, &sa, nullptr);
  });
}

int claim_slot(const std::string& mountpoint) {
  if (mountpoint.size() >= PATH_MAX) return -1;
  std::lock_guard lock(g_slots_mutex);
  for (int i = 0; i < kSlots; ++i) {
    if (!g_slot_used[i].load()) {
      std::memcpy(g_mountpoints[i], mountpoint.c_str(), mountpoint.size() + 1);
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

// Ends a FUSE connection the kernel keeps alive (a lazy unmount completes only once nothing
// uses the mount): writes to its "abort" file in the fusectl file system, mounting that on a
// private directory when /sys/fs/fuse/connections is not there.
void abort_connection(unsigned minor_id) {
  auto write_abort = [&](const std::string& root) {
    std::ofstream out(root + "/" + std::to_string(minor_id) + "/abort");
    out << "1";
    return static_cast<bool>(out.flush());
  };
  if (write_abort("/sys/fs/fuse/connections")) return;
  char tmpl[] = "/tmp/portalfs-fusectl-XXXXXX";
  if (!::mkdtemp(tmpl)) return;
  if (::mount("fusectl", tmpl, "fusectl", 0, nullptr) == 0) {
    write_abort(tmpl);
    ::umount2(tmpl, MNT_DETACH);
  }
  ::rmdir(tmpl);
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

MountedFs::MountedFs(fuse::Options options) {
  std::filesystem::create_directories(storage());
  std::filesystem::create_directories(mountpoint());
  ::chmod(dir_.path().c_str(), 0755);  // so forked non-root callers can reach the mount
  fs_ = std::make_unique<fuse::Filesystem>(options);
  if (::access("/dev/fuse", R_OK | W_OK) != 0) {
    error_ = "/dev/fuse is not accessible";
    return;
  }
  try {
    session_ = std::make_unique<fuse::Session>(*fs_, fuse::SessionOptions{mountpoint(), 0, false});
  } catch (const std::exception& e) {
    error_ = e.what();
    return;
  }
  install_crash_handler();
  slot_ = claim_slot(mountpoint());
  loop_ = std::thread([this] {
    session_->run();
    loop_done_.store(true);
  });
  // The connection's number (the minor of the mount's st_dev), in case teardown must abort it.
  struct stat st {};
  if (::stat(mountpoint().c_str(), &st) == 0) connection_ = minor(st.st_dev);
}

MountedFs::~MountedFs() {
  if (!session_) return;
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

std::string MountedFs::add_view(const std::string& app, ViewKind kind, const std::string& name,
                                const std::string& backing) {
  std::string b = backing.empty() ? storage() + "/" + app + "-" + name : backing;
  std::filesystem::create_directories(b);
  auto spec = preset(app, kind, name, b);
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
