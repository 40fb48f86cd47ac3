// SPDX-License-Identifier: MIT
#include "fuse/session_io.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "common/log.hpp"
#include "fuse/filesystem.hpp"

namespace portalfs::fuse {

namespace {

// The parts of the kernel's FUSE protocol (include/uapi/linux/fuse.h, 7.40+) that libfuse
// 3.14 and Debian 12's kernel headers do not have.
constexpr uint32_t kOpInit = 26;
constexpr uint32_t kOpOpen = 14;
constexpr uint32_t kOpWrite = 16;
constexpr uint32_t kOpCreate = 35;
constexpr uint32_t kOpenKillSuidgid = 1u << 0;   // fuse_open_in/fuse_create_in open_flags
constexpr uint32_t kWriteKillSuidgid = 1u << 2;  // fuse_write_in write_flags
constexpr uint32_t kInitExt = 1u << 30;              // flags: flags2 is valid
constexpr uint32_t kWritebackCache = 1u << 16;       // flags: excludes passthrough
constexpr uint32_t kHandleKillprivV2 = 1u << 28;     // flags: FUSE_HANDLE_KILLPRIV_V2
constexpr uint32_t kDirectIoAllowMmap2 = 1u << (36 - 32);  // flags2: FUSE_DIRECT_IO_ALLOW_MMAP
constexpr uint32_t kPassthrough2 = 1u << (37 - 32);  // flags2: FUSE_PASSTHROUGH
constexpr uint32_t kRequestTimeout2 = 1u << (42 - 32);  // flags2: FUSE_REQUEST_TIMEOUT
constexpr uint32_t kOpenDirectIo = 1u << 0;
constexpr uint32_t kOpenKeepCache = 1u << 1;
constexpr uint32_t kOpenPassthrough = 1u << 7;
constexpr unsigned kUringThreadsPerQueue = 4;

struct InHeader {
  uint32_t len, opcode;
  uint64_t unique, nodeid;
  uint32_t uid, gid, pid;
  uint16_t total_extlen, padding;
};
struct InitIn {
  uint32_t major, minor, max_readahead, flags, flags2;
};
struct OutHeader {
  uint32_t len;
  int32_t error;
  uint64_t unique;
};
struct InitOut {
  uint32_t major, minor, max_readahead, flags;
  uint16_t max_background, congestion_threshold;
  uint32_t max_write, time_gran;
  uint16_t max_pages, map_alignment;
  uint32_t flags2, max_stack_depth;
  uint16_t request_timeout;  // seconds, with FUSE_REQUEST_TIMEOUT
};
struct OpenOut {
  uint64_t fh;
  uint32_t open_flags;
  int32_t backing_id;
};
// Where a request's kill flag is: after the header, at these offsets of fuse_open_in
// {flags, open_flags}, fuse_create_in {flags, mode, umask, open_flags} and fuse_write_in
// {fh, offset, size, write_flags, ...}.
constexpr size_t kOpenFlagsAt = 4;
constexpr size_t kCreateFlagsAt = 12;
constexpr size_t kWriteFlagsAt = 20;
thread_local bool kills_setid = false;

// The passthrough of the open or create reply this thread is about to send.
struct Mark {
  int32_t id = 0;
  bool direct_io = false;
};
thread_local Mark next_reply;

SessionIo& of(void* userdata) { return static_cast<Filesystem*>(userdata)->session_io(); }

// ThreadSanitizer does not know that the kernel orders the requests it sends after the replies
// it got: the kernel sends RELEASE only once every request on the file was answered, so the
// worker that frees a FileHandle runs after the last one that used it, with nothing in the
// daemon to say so. Under TSan, every reply publishes what its thread did, and every request
// received acquires it.
#if defined(__SANITIZE_THREAD__)
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
char kernel_order;
void replied() { __tsan_release(&kernel_order); }
void received() { __tsan_acquire(&kernel_order); }
#else
void replied() {}
void received() {}
#endif

ssize_t splice_receive_hook(int in, off_t* in_off, int out, off_t* out_off, size_t len,
                            unsigned int flags, void*) {
  const ssize_t n = ::splice(in, in_off, out, out_off, len, flags);
  received();
  return n;
}

ssize_t splice_send_hook(int in, off_t* in_off, int out, off_t* out_off, size_t len,
                         unsigned int flags, void*) {
  replied();
  return ::splice(in, in_off, out, out_off, len, flags);
}

}  // namespace

void SessionIo::install(fuse_session* se) {
  // The hooks go on whether or not passthrough is wanted (they only watch then): one I/O path.
  dev_fd_ = fuse_session_fd(se);
  se_ = se;
  fuse_custom_io io{};
  io.read = read_hook;
  io.writev = writev_hook;
  io.splice_receive = splice_receive_hook;
  io.splice_send = splice_send_hook;
  if (fuse_session_custom_io(se, &io, dev_fd_) != 0) {
    common::log(common::LogLevel::warn,
                "passthrough: cannot hook the FUSE session; files are served by the daemon");
    return;
  }
}

bool SessionIo::request_kills_setid() { return kills_setid; }

void SessionIo::note_request(const void* buf, size_t len) {
  kills_setid = false;
  if (len < sizeof(InHeader)) return;
  InHeader h;
  std::memcpy(&h, buf, sizeof h);
  const auto flag = [&](size_t at, uint32_t bit) {
    uint32_t v = 0;
    if (len < sizeof h + at + sizeof v) return false;
    std::memcpy(&v, static_cast<const char*>(buf) + sizeof h + at, sizeof v);
    return (v & bit) != 0;
  };
  if (h.opcode == kOpWrite) kills_setid = flag(kWriteFlagsAt, kWriteKillSuidgid);
  else if (h.opcode == kOpOpen) kills_setid = flag(kOpenFlagsAt, kOpenKillSuidgid);
  else if (h.opcode == kOpCreate) kills_setid = flag(kCreateFlagsAt, kOpenKillSuidgid);
}

ssize_t SessionIo::read_hook(int fd, void* buf, size_t len, void* userdata) {
  const ssize_t n = ::read(fd, buf, len);
  received();
  if (n > 0) note_request(buf, static_cast<size_t>(n));
  if (n >= static_cast<ssize_t>(sizeof(InHeader) + sizeof(InitIn))) {
    InHeader h;
    std::memcpy(&h, buf, sizeof h);
    if (h.opcode == kOpInit) {
      InitIn in;
      std::memcpy(&in, static_cast<char*>(buf) + sizeof h, sizeof in);
      SessionIo& self = of(userdata);
      self.kernel_offers_ = (in.flags & kInitExt) && (in.flags2 & kPassthrough2);
      self.kernel_times_out_ = (in.flags & kInitExt) && (in.flags2 & kRequestTimeout2);
      self.kernel_maps_direct_io_ = (in.flags & kInitExt) && (in.flags2 & kDirectIoAllowMmap2);
      self.kernel_offers_killpriv_v2_ = (in.flags & kHandleKillprivV2) != 0;
      self.kernel_offers_uring_ = (in.flags & kInitExt) && (in.flags2 & uring_abi::kOverIoUring2);
      self.uring_planned_ = self.uring_wanted_ && self.kernel_offers_uring_;
      self.init_unique_ = h.unique;
    }
  }
  return n;
}

ssize_t SessionIo::writev_hook(int fd, struct iovec* iov, int count, void* userdata) {
  const Mark mark = std::exchange(next_reply, Mark{});
  OutHeader h;
  bool init = false;
  SessionIo& self = of(userdata);
  if (count >= 2 && iov[0].iov_len >= sizeof h) {
    std::memcpy(&h, iov[0].iov_base, sizeof h);
    if (h.error == 0 && h.unique == self.init_unique_ && iov[1].iov_len >= sizeof(InitOut)) {
      init = true;
      auto* out = static_cast<InitOut*>(iov[1].iov_base);
      const bool ext = out->flags & kInitExt;
      if (ext && self.wanted_ && self.kernel_offers_ && !(out->flags & kWritebackCache)) {
        out->flags2 |= kPassthrough2;
        out->max_stack_depth = 1;  // files on a plain (not stacked) file system
        self.active_ = true;
      }
      if (ext && self.kernel_maps_direct_io_) {
        // Shared mmap of a direct_io file (a file two views show, ops_file.cpp): the kernel
        // then maps it through the view's page cache, written back to the daemon, which drops
        // the other views' pages (their next read or fault asks it again).
        out->flags2 |= kDirectIoAllowMmap2;
        self.mmap_active_ = true;
      }
      if (self.kernel_offers_killpriv_v2_) {
        // The daemon kills set-uid and set-gid bits: a view never shows them, and it clears
        // them on disk when an app opens a file for writing or truncates it (ops_file.cpp,
        // ops_entry.cpp); the backing file system drops security.capability at every write
        // itself. In return the kernel sets SB_NOSEC: once a file was found to carry no
        // security.capability, its writes stop asking for it (one GETXATTR per write before).
        out->flags |= kHandleKillprivV2;
      }
      if (ext && self.request_timeout_ && self.kernel_times_out_) {
        out->flags2 |= kRequestTimeout2;
        out->request_timeout = self.request_timeout_;
        self.timeout_active_ = true;
      }
      if (ext && self.uring_planned_) {
        out->flags2 |= uring_abi::kOverIoUring2;
        // The kernel's entries take max(8 KiB, max_write, max_pages pages) of payload; without
        // FUSE_MAX_PAGES, max_pages is its default, 32.
        constexpr size_t kPage = 4096;
        self.uring_payload_ = std::max({size_t{8192}, size_t{out->max_write},
                                        size_t{out->max_pages} * kPage, size_t{32} * kPage});
        self.uring_accepted_ = true;
      }
    } else if (h.error == 0 && mark.id > 0 && iov[count - 1].iov_len >= sizeof(OpenOut)) {
      // open: the payload is fuse_open_out; create: fuse_entry_out then fuse_open_out.
      auto* out = reinterpret_cast<OpenOut*>(static_cast<char*>(iov[count - 1].iov_base) +
                                             iov[count - 1].iov_len - sizeof(OpenOut));
      out->open_flags &= ~(kOpenKeepCache | kOpenDirectIo);
      out->open_flags |= kOpenPassthrough | (mark.direct_io ? kOpenDirectIo : 0);
      out->backing_id = mark.id;
    }
  }
  replied();
  if (UringTransport* ring = self.uring_live_.load(std::memory_order_acquire); ring && ring->deliver(iov, count)) {
    ssize_t n = 0;
    for (int i = 0; i < count; ++i) n += static_cast<ssize_t>(iov[i].iov_len);
    return n;
  }
  const ssize_t n = ::writev(fd, iov, count);
  // The kernel has processed INIT's reply when the write returns: the ring may register now.
  if (init && n >= 0 && self.uring_accepted_) self.start_uring();
  if (init && !self.uring_accepted_) {
    const std::string why = !self.uring_wanted_ ? "--no-io-uring"
                            : self.kernel_offers_uring_ ? "no flags2 in INIT"
                            : uring_module_param().empty()
                                ? "the kernel has no FUSE over io_uring"
                                : "the kernel does not offer io_uring: fuse's enable_uring is " + uring_module_param();
    common::log(common::LogLevel::info, "FUSE transport: /dev/fuse (" + why + ")");
  }
  return n;
}

SessionIo::~SessionIo() { stop_uring(); }

void SessionIo::start_uring() {
  if (uring_) return;
  UringTransport::Config c;
  c.session = se_;
  c.dev_fd = dev_fd_;
  c.payload_size = uring_payload_;
  c.queues = possible_cpus();
  // Each thread serves one request at a time: an op that blocks holds its thread's entry only.
  c.threads_per_queue = kUringThreadsPerQueue;
  try {
    uring_ = std::make_unique<UringTransport>(c);
  } catch (const std::bad_alloc&) {
    common::log(common::LogLevel::warn, "FUSE over io_uring: cannot allocate the ring entries; serving on /dev/fuse");
    return;
  }
  // Published before the first entry is registered: the kernel may send a request on it at
  // once, and its reply must find it.
  uring_live_.store(uring_.get(), std::memory_order_release);
  if (auto err = uring_->start(); !err.empty()) {
    uring_live_.store(nullptr, std::memory_order_release);
    common::log(common::LogLevel::warn, "FUSE over io_uring: " + err + "; serving on /dev/fuse");
    return;
  }
  common::log(common::LogLevel::info,
              "FUSE transport: io_uring (" + std::to_string(c.queues) + " queues, " +
                  std::to_string(c.threads_per_queue) + " threads each; FORGET and INTERRUPT on /dev/fuse)");
}

void SessionIo::stop_uring() {
  if (uring_) uring_->stop();
}

std::string SessionIo::transport() const {
  return uring_live_.load(std::memory_order_acquire) ? "io_uring" : "/dev/fuse";
}

uint64_t SessionIo::uring_requests() const {
  const UringTransport* ring = uring_live_.load(std::memory_order_acquire);
  return ring ? ring->requests() : 0;
}

void SessionIo::arm_open_reply(int32_t backing, bool direct_io) {
  next_reply = {backing, direct_io};
}

}  // namespace portalfs::fuse
