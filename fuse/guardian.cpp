// SPDX-License-Identifier: MIT
#include "fuse/guardian.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "common/log.hpp"

namespace portalfs::fuse {

namespace {

/// Closes every fd but 0, 1, 2, `a` and `b`: the guardian must not hold /dev/fuse (the
/// connection would outlive the daemon with it) nor anything else of the daemon's.
void close_all_but(int a, int b) {
  const unsigned lo = static_cast<unsigned>(std::min(a, b)), hi = static_cast<unsigned>(std::max(a, b));
  ::close_range(3, lo - 1, 0);
  if (hi > lo + 1) ::close_range(lo + 1, hi - 1, 0);
  ::close_range(hi + 1, ~0U, 0);
}

/// The guardian's life. The parent has threads, and the child a copy of the calling one only:
/// async-signal-safe calls from here on (no allocation, no locks).
[[noreturn]] void guard(int abort_fd, int stand_down, pid_t parent) {
  sigset_t all;
  ::sigfillset(&all);
  ::sigprocmask(SIG_BLOCK, &all, nullptr);  // a service stop's SIGTERM to the group is for the daemon
  close_all_but(abort_fd, stand_down);
  sigset_t death;
  ::sigemptyset(&death);
  ::sigaddset(&death, SIGUSR1);
  const int death_fd = ::signalfd(-1, &death, SFD_CLOEXEC);
  ::prctl(PR_SET_PDEATHSIG, SIGUSR1);
  // Told apart from the daemon in ps and by `pgrep -x portalfsd` (the command line is the same).
  ::prctl(PR_SET_NAME, "portalfsd-guard");
  bool killed = ::getppid() != parent;  // it died before the prctl
  pollfd fds[2] = {{stand_down, POLLIN, 0}, {death_fd, POLLIN, 0}};
  while (!killed) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    killed = fds[1].revents & POLLIN;
    if (fds[0].revents) break;  // stood down (a byte, or the pipe closed by the daemon's exit)
  }
  if (killed) {
    const ssize_t n = ::write(abort_fd, "1", 1);
    (void)n;  // nothing to do about a failure here
  }
  ::_exit(0);
}

}  // namespace

Guardian::Guardian(common::UniqueFd abort_fd) {
  if (!abort_fd) return;
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
    common::log(common::LogLevel::warn, std::string("no guardian for the FUSE connection (pipe: ") +
                                            std::strerror(errno) + "): a SIGKILL may leave the mount hung");
    return;
  }
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) guard(abort_fd.get(), pipe_fds[0], parent);
  ::close(pipe_fds[0]);
  if (pid < 0) {
    ::close(pipe_fds[1]);
    common::log(common::LogLevel::warn, std::string("no guardian for the FUSE connection (fork: ") +
                                            std::strerror(errno) + "): a SIGKILL may leave the mount hung");
    return;
  }
  pid_ = pid;
  stand_down_.reset(pipe_fds[1]);
}

Guardian::~Guardian() {
  if (pid_ < 0) return;
  const ssize_t n = ::write(stand_down_.get(), "q", 1);
  (void)n;  // closing the pipe stands it down too
  stand_down_.reset();
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
}

}  // namespace portalfs::fuse
