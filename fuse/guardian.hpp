// SPDX-License-Identifier: MIT
#pragma once

// Guardian: a child process that ends the FUSE connection when the daemon is killed.
//
// Why. Some threads of the daemon wait inside the kernel on this very connection: the
// notifier's echoes are syscalls into the mount, and its invalidations take locks that the
// mount's own requests hold (events.cpp, notifier.hpp). When SIGKILL ends the workers, such a
// thread waits for an answer nobody will give, and waits uninterruptibly: the kernel waits out
// a request that userspace has already read (fs/fuse/dev.c, request_wait_answer). The process
// then can't finish dying, so it keeps /dev/fuse open, so the connection never ends (the
// kernel ends it when its last /dev/fuse file is closed): every app using the mount hangs with
// it until the request timeout. Only an abort through fusectl ends that.
//
// The guardian holds the connection's fusectl `abort` file open and asks the kernel for a
// signal when the thread that started it exits (PR_SET_PDEATHSIG). A SIGKILL ends that thread
// at once, even while another thread of the daemon is stuck; the guardian then writes the
// abort, the stuck requests fail, and the daemon finishes dying. An open abort file names its
// connection alone: once that connection has ended, a write to it does nothing, even if a new
// connection has the same number.

#include <sys/types.h>

#include "common/unique_fd.hpp"

namespace portalfs::fuse {

class Guardian {
 public:
  /// Forks the guardian for the connection whose fusectl abort file is `abort_fd` (taken).
  /// Nothing (a warning) if it can't fork. The calling thread is the one watched: it must
  /// live as long as the connection may be waited on (Session::run's thread).
  explicit Guardian(common::UniqueFd abort_fd);
  /// Stands the guardian down (nothing waits on the connection any more) and reaps it.
  ~Guardian();
  Guardian(const Guardian&) = delete;
  Guardian& operator=(const Guardian&) = delete;

  /// The child's pid (-1: none), for tests.
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  common::UniqueFd stand_down_;  // the write end of a pipe the guardian reads
};

}  // namespace portalfs::fuse
