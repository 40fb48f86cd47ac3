// SPDX-License-Identifier: MIT
#include "fuse/session.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <vector>

#include "fuse/guardian.hpp"

namespace portalfs::fuse {

namespace {
// The signals that stop the daemon (StopSignals takes them, below).
constexpr int kStopSignals[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT};
sigset_t stop_signals() {
  sigset_t set;
  ::sigemptyset(&set);
  for (int sig : kStopSignals) ::sigaddset(&set, sig);
  return set;
}

// Wakes the loop's thread: its handler does nothing, so the loop's semaphore wait returns
// EINTR (no SA_RESTART) and libfuse looks at the exit flag again.
constexpr int kWakeSignal = SIGUSR2;
void on_wake(int) {}

// The thread that takes the stop signals while the loop runs (every thread blocks them:
// install_signal_handlers). On one it sets the session's exit flag, then wakes the loop's
// thread until the loop has returned. libfuse 3.14's loop checks the flag, then waits on a
// semaphore that only a finishing worker posts: a flag set by a handler between the two
// (the loop's thread preempted there, under load) woke nobody, and a stop was lost. Waking
// it again until it returns closes that window.
class StopSignals {
 public:
  explicit StopSignals(fuse_session* se) : se_(se), loop_(::pthread_self()), thread_([this] { wait(); }) {}
  /// Right after the loop returned.
  ~StopSignals() {
    bool signalled;
    {
      std::lock_guard lock(mutex_);
      done_ = true;
      signalled = signalled_;
    }
    woken_.notify_all();
    if (!signalled) ::pthread_kill(thread_.native_handle(), SIGTERM);  // ends its sigwait
    thread_.join();
  }
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

 private:
  void wait() {
    const sigset_t set = stop_signals();
    int sig = 0;
    while (::sigwait(&set, &sig) != 0) {
    }
    std::unique_lock lock(mutex_);
    signalled_ = true;
    if (done_) return;
    fuse_session_exit(se_);
    while (!done_) {
      ::pthread_kill(loop_, kWakeSignal);
      woken_.wait_for(lock, std::chrono::milliseconds(20));
    }
  }

  fuse_session* const se_;
  const pthread_t loop_;
  std::mutex mutex_;
  std::condition_variable woken_;
  bool done_ = false, signalled_ = false;
  std::thread thread_;  // last: it uses the members above
};

// The FUSE connection's number (its name in fusectl) is the minor of the mount's device.
// Read from mountinfo: a stat of the mountpoint would ask this very connection, which does
// not answer before the loop runs.
std::string connection_of(const std::string& mountpoint) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line, n;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string id, parent, devno, root, mnt;
    ls >> id >> parent >> devno >> root >> mnt;
    if (mnt == mountpoint && devno.find(':') != std::string::npos) {
      n = devno.substr(devno.find(':') + 1);  // the last mount there is ours
    }
  }
  return n;
}

// A lazy unmount; not root, through the set-uid fusermount3 (libfuse's own,
// fuse_session_unmount, closes the session's fd, which the loop's workers still read).
void lazy_unmount(const std::string& mountpoint) {
  if (::umount2(mountpoint.c_str(), MNT_DETACH) == 0 || errno != EPERM) return;
  std::vector<std::string> argv_s = {"fusermount3", "-u", "-q", "-z", "--", mountpoint};
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  // Without the daemon's block of the stop signals (install_signal_handlers).
  posix_spawnattr_t attr;
  ::posix_spawnattr_init(&attr);
  sigset_t none;
  ::sigemptyset(&none);
  ::posix_spawnattr_setsigmask(&attr, &none);
  ::posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  pid_t pid = -1;
  const int rc = ::posix_spawnp(&pid, "fusermount3", nullptr, &attr, argv.data(), environ);
  ::posix_spawnattr_destroy(&attr);
  if (rc != 0) return;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
}

}  // namespace

Session::Session(Filesystem& fs, SessionOptions options) : fs_(fs), options_(std::move(options)) {
  // Not root: libfuse mounts through fusermount3, which allows allow_other only with
  // user_allow_other in /etc/fuse.conf; a rootless mount serves its own user (privileges.hpp).
  std::string mount_options = "default_permissions,nosuid,nodev,fsname=portalfs,subtype=portalfs";
  if (fs_.privileges().allow_other) mount_options = "allow_other," + mount_options;
  std::vector<std::string> argv_s = {"portalfsd", "-o", mount_options};
  if (options_.debug) argv_s.push_back("-d");
  std::vector<char*> argv;
  for (auto& s : argv_s) argv.push_back(s.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
  const auto& ops = Filesystem::ops();
  se_ = fuse_session_new(&args, &ops, sizeof(ops), &fs_);
  fuse_opt_free_args(&args);
  if (!se_) throw std::runtime_error("cannot create the FUSE session");
  // Not root, mount(2) refuses and libfuse mounts through the set-uid fusermount3.
  if (fuse_session_mount(se_, options_.mountpoint.c_str()) != 0) {
    fuse_session_destroy(se_);
    se_ = nullptr;
    throw std::runtime_error("cannot mount at " + options_.mountpoint +
                             (fs_.privileges().allow_other
                                  ? " (is /dev/fuse there?)"
                                  : " through fusermount3 as uid " + std::to_string(::geteuid()) +
                                        " (see its line above; apt install fuse3)"));
  }
  mounted_ = true;
  fs_.session_io().install(se_);
  connection_ = connection_of(options_.mountpoint);
}

Session::~Session() {
  if (!se_) return;
  // The loop has ended: a request the notifier waits for (an echo into the mount, a lock an
  // invalidation needs) will never be answered, so there is no point waiting long for it.
  if (!fs_.detach_session(std::chrono::milliseconds(100))) {
    // End the connection so that the kernel fails those requests, then the notifier finishes.
    abort_connection();
    fs_.detach_session(std::chrono::hours(1));
    // libfuse's unmount (below) leaves a connection it finds aborted mounted, dead: unmount
    // it here. (It happens when SIGTERM ends the loop while the notifier waits on the mount
    // for an echo: libfuse's signal handler ends the workers first.)
    if (mounted_) lazy_unmount(options_.mountpoint);
  }
  fs_.session_io().stop_uring();  // before the session goes: the ring's threads use it
  if (mounted_) fuse_session_unmount(se_);
  fuse_session_destroy(se_);
  if (signals_) {
    // Unmounted: a stop signal from now on (a second one, for a shutdown that hangs) ends the
    // process, as by default.
    const sigset_t set = stop_signals();
    for (int sig : kStopSignals) ::signal(sig, SIG_DFL);
    ::pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
  }
}

int Session::run() {
  // The notifier's thread starts here, not when mounting: portalfsd goes to the background
  // (fork) in between, and a fork keeps only the calling thread.
  // Not rootless: fusectl's files are root's, and a rootless daemon sends no echoes.
  std::optional<Guardian> guardian;
  if (fs_.privileges().allow_other) guardian.emplace(open_abort_file());
  fs_.attach_session(se_, options_.mountpoint);
  fuse_loop_config* cfg = fuse_loop_cfg_create();
  if (options_.max_threads) fuse_loop_cfg_set_max_threads(cfg, options_.max_threads);
  std::optional<StopSignals> stops;
  if (signals_) stops.emplace(se_);  // one already pending ends the loop at once
  int rc = fuse_session_loop_mt(se_, cfg);
  stops.reset();
  fuse_loop_cfg_destroy(cfg);
  // The ring's threads serve until the connection ends, or until told to (the loop ended on a
  // signal or stop(), the connection may live on).
  fs_.session_io().stop_uring();
  return rc;
}

void Session::stop() {
  // Stop the notifier while the workers still serve the requests it may be waiting for.
  fs_.detach_session();
  fuse_session_exit(se_);
  // Wake the workers blocked in read(/dev/fuse): a lazy unmount ends the connection once
  // nothing uses the mount; libfuse then sees ENODEV and the loop returns.
  if (mounted_) lazy_unmount(options_.mountpoint);
}


common::UniqueFd Session::open_abort_file() const {
  const std::string& n = connection_;
  if (n.empty()) return {};
  const auto open_in = [&](const std::string& dir) {
    return common::UniqueFd(::open((dir + "/" + n + "/abort").c_str(), O_WRONLY | O_CLOEXEC));
  };
  if (auto fd = open_in("/sys/fs/fuse/connections")) return fd;
  // fusectl is not mounted there: mount it on a private directory. The open file keeps that
  // mount alive after the lazy unmount.
  char dir[] = "/tmp/portalfs-fusectl-XXXXXX";
  if (!::mkdtemp(dir)) return {};
  common::UniqueFd fd;
  if (::mount("fusectl", dir, "fusectl", 0, nullptr) == 0) {
    fd = open_in(dir);
    ::umount2(dir, MNT_DETACH);
  }
  ::rmdir(dir);
  return fd;
}

void Session::abort_connection() {
  if (auto fd = open_abort_file()) {
    const ssize_t n = ::write(fd.get(), "1", 1);
    (void)n;  // an ended connection: nothing to abort
  }
}

void Session::install_signal_handlers() {
  // Blocked here, before any other thread starts, so that every thread inherits the block:
  // only run()'s StopSignals thread takes them (sigwait). libfuse's own handlers set the exit
  // flag on whichever thread the kernel picked and left the loop to notice.
  const sigset_t set = stop_signals();
  ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
  struct sigaction wake {};
  wake.sa_handler = on_wake;
  ::sigemptyset(&wake.sa_mask);
  ::sigaction(kWakeSignal, &wake, nullptr);
  ::signal(SIGPIPE, SIG_IGN);  // a write to a closed socket or pipe is an error, not an end
  signals_ = true;
}

namespace {
// Whether the FUSE daemon behind a mount answers. statfs always asks the daemon (stat may be
// answered from the kernel's attribute cache), so a dead connection shows as ENOTCONN.
bool dead_connection(const std::string& path) {
  struct statfs sf {};
  return ::statfs(path.c_str(), &sf) != 0 && errno == ENOTCONN;
}
}  // namespace

MountpointState probe_mountpoint(const std::string& path) {
  struct stat st {};
  if (dead_connection(path)) return MountpointState::stale_portalfs;
  if (::stat(path.c_str(), &st) != 0 && errno == ENOENT) return MountpointState::missing;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  MountpointState state = MountpointState::free;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string id, parent, devno, root, mnt;
    ls >> id >> parent >> devno >> root >> mnt;
    if (mnt != path) continue;
    auto dash = line.find(" - ");
    std::string rest = dash == std::string::npos ? "" : line.substr(dash + 3);
    std::istringstream rs(rest);
    std::string fstype, source;
    rs >> fstype >> source;
    if (fstype == "fuse.portalfs" || source == "portalfs") {
      state = dead_connection(path) ? MountpointState::stale_portalfs : MountpointState::live_portalfs;
    } else {
      state = MountpointState::other_mount;
    }
  }
  return state;
}

std::string clear_stale_mount(const std::string& path) {
  if (::umount2(path.c_str(), MNT_DETACH) != 0 && errno != EINVAL) {
    return "cannot clear the stale mount at " + path + ": " + std::strerror(errno);
  }
  return "";
}

}  // namespace portalfs::fuse
