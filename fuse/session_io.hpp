// SPDX-License-Identifier: MIT
#pragma once

// The session's own I/O layer: every request the kernel sends and every reply goes through
// these hooks (libfuse's fuse_session_custom_io). libfuse 3.14 predates kernel passthrough
// (Linux 6.9+), so they add what it lacks:
//   - INIT: the kernel's offer is read from its request, and the reply patched to accept it
//     (FUSE_PASSTHROUGH in flags2, max_stack_depth 1);
//   - INIT, too: shared mmap of direct_io files (FUSE_DIRECT_IO_ALLOW_MMAP, protocol 7.39,
//     Linux 6.6+), which libfuse 3.14 cannot ask for;
//   - INIT, too: FUSE_HANDLE_KILLPRIV_V2 (Linux 5.11+), which libfuse 3.14 does not know:
//     the daemon clears set-id bits itself (ops_file.cpp), and the kernel marks the mount
//     SB_NOSEC, so a write no longer asks for security.capability first (a GETXATTR round
//     trip before every write, passthrough ones included);
//   - INIT, too: a request timeout (protocol 7.43, Linux 6.14+): the kernel ends the connection
//     when a request stays unanswered that long (below);
//   - OPEN/CREATE: the reply of an open that passes through is patched with FOPEN_PASSTHROUGH
//     and the backing id (libfuse's fuse_file_info has no field for either). The op decides;
//     Filesystem::reply() arms the patch (arm_open_reply) right before fuse_reply_open or
//     fuse_reply_create, which write the reply on the same thread.
//   - INIT, too: FUSE over io_uring (protocol 7.42, Linux 6.14+, the fuse module's
//     enable_uring): when the kernel offers it, the reply asks for it and the ring transport
//     (uring.hpp) starts once the kernel took the reply; replies to requests that came from
//     the ring are caught here and go back through it.
//   - OPEN, CREATE, WRITE: whether the kernel asks the daemon to clear set-id bits
//     (request_kills_setid).
// They also splice plainly for libfuse's splice paths, and tell ThreadSanitizer how the kernel
// orders requests after replies. The hooks are on for every session (they only watch when
// passthrough is off): one I/O path.

#include <sys/uio.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "fuse/fuse_api.hpp"
#include "fuse/uring.hpp"

namespace portalfs::fuse {

class SessionIo {
 public:
  /// `request_timeout`: seconds (0: none). A request unanswered that long makes the kernel
  /// abort the connection: the mount answers ENOTCONN instead of hanging its callers forever.
  /// What it is for: a portalfsd killed (SIGKILL, the OOM killer) while one of its own threads
  /// waits in a request to its own mount (the notifier's echoes, events.cpp; the readiness
  /// check) can't exit: that request was read by a worker that is gone, the kernel waits for
  /// its answer uninterruptibly, and the thread keeps /dev/fuse open, so the connection never
  /// ends. Every process that touches the mount then hangs with it, and a restarted portalfsd
  /// can't mount. With the timeout the kernel ends it. No op of the daemon takes that long:
  /// each is a few local syscalls (copy_file_range is done in bounded chunks).
  /// `uring_wanted`: serve over io_uring when the kernel offers it (uring.hpp).
  SessionIo(bool passthrough_wanted, uint16_t request_timeout, bool uring_wanted = true)
      : wanted_(passthrough_wanted), request_timeout_(request_timeout), uring_wanted_(uring_wanted) {}
  ~SessionIo();
  SessionIo(const SessionIo&) = delete;
  SessionIo& operator=(const SessionIo&) = delete;

  /// Puts the hooks on `se` (after fuse_session_mount, before the loop). The session's
  /// userdata must be the Filesystem that owns this object.
  void install(fuse_session* se);
  /// Whether the kernel accepted passthrough for this connection.
  [[nodiscard]] bool active() const { return active_.load(std::memory_order_acquire); }
  /// The request timeout the kernel took, in seconds (0: none asked, or an older kernel).
  [[nodiscard]] uint16_t request_timeout() const {
    return timeout_active_.load(std::memory_order_acquire) ? request_timeout_ : 0;
  }
  /// Whether the kernel took FUSE_DIRECT_IO_ALLOW_MMAP: MAP_SHARED works on direct_io files.
  [[nodiscard]] bool direct_io_mmap() const { return mmap_active_.load(std::memory_order_acquire); }
  /// The session's /dev/fuse fd (-1 before install()): the backing ioctls go there.
  [[nodiscard]] int dev_fd() const { return dev_fd_; }

  /// Whether this connection is to be served over io_uring: the kernel offered it at INIT and
  /// it is wanted (from INIT on; the ring itself starts right after INIT's reply).
  [[nodiscard]] bool uring_planned() const { return uring_planned_.load(std::memory_order_acquire); }
  /// The transport, for `portalctl status`: "io_uring" once the ring started, else "/dev/fuse".
  [[nodiscard]] std::string transport() const;
  /// Requests served from the ring so far (0: none, or no ring).
  [[nodiscard]] uint64_t uring_requests() const;
  /// Ends the ring's threads (after the loop, before the session goes): idempotent.
  void stop_uring();

  /// Patches the next open or create reply this thread writes: passthrough of `backing`
  /// (`direct_io`: reads and writes still come to the daemon, only mmap passes through).
  static void arm_open_reply(int32_t backing, bool direct_io);

  /// Whether the request this thread serves asks the daemon to clear set-id bits: the caller
  /// lacks CAP_FSETID and writes (FUSE_WRITE_KILL_SUIDGID) or opens with O_TRUNC
  /// (FUSE_OPEN_KILL_SUIDGID), which FUSE_HANDLE_KILLPRIV_V2 leaves to the daemon
  /// (setid_bits.hpp). libfuse 3.14 passes neither flag on to the op.
  static bool request_kills_setid();
  /// Reads it from a request about to be dispatched on this thread (`buf`: `len` bytes of
  /// it, its header first). The ring transport calls it too (uring.cpp).
  static void note_request(const void* buf, size_t len);

 private:
  static ssize_t read_hook(int fd, void* buf, size_t len, void* userdata);
  static ssize_t writev_hook(int fd, struct iovec* iov, int count, void* userdata);

  const bool wanted_;
  const uint16_t request_timeout_;
  std::atomic<bool> active_{false};
  std::atomic<bool> kernel_offers_{false};
  std::atomic<bool> kernel_times_out_{false};
  std::atomic<bool> timeout_active_{false};
  std::atomic<bool> kernel_maps_direct_io_{false};
  std::atomic<bool> kernel_offers_killpriv_v2_{false};
  std::atomic<bool> mmap_active_{false};
  std::atomic<uint64_t> init_unique_{0};
  int dev_fd_ = -1;
  fuse_session* se_ = nullptr;

  const bool uring_wanted_;
  std::atomic<bool> kernel_offers_uring_{false};
  std::atomic<bool> uring_planned_{false};
  std::atomic<bool> uring_accepted_{false};  // the INIT reply asked for it
  size_t uring_payload_ = 0;
  std::unique_ptr<UringTransport> uring_;    // set once, after INIT; lives as long as this
  std::atomic<UringTransport*> uring_live_{nullptr};
  void start_uring();
};

}  // namespace portalfs::fuse
