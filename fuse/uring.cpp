// SPDX-License-Identifier: MIT
#include "fuse/uring.hpp"

#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/log.hpp"
#include "fuse/session_io.hpp"

namespace portalfs::fuse {

namespace {

struct InHeader {  // struct fuse_in_header
  uint32_t len, opcode;
  uint64_t unique, nodeid;
  uint32_t uid, gid, pid;
  uint16_t total_extlen, padding;
};
struct OutHeader {  // struct fuse_out_header
  uint32_t len;
  int32_t error;
  uint64_t unique;
};
static_assert(sizeof(InHeader) == 40 && sizeof(OutHeader) == 16);

// The entry's buffer: libfuse's dispatcher wants the request in one piece (header, the op's
// header, then the rest), so the payload the kernel writes is registered at kPrefix, and the
// two headers are put right before it: no copy of a write's data.
constexpr size_t kPrefix = 4096;  // the payload stays page-aligned
static_assert(kPrefix >= sizeof(InHeader) + uring_abi::kOpInOutSize);

// The entry the current thread serves: its replies are caught without a search.
thread_local UringTransport::Entry* current_entry = nullptr;

bool connection_gone(int res) { return res == -ENOTCONN || res == -ECONNABORTED || res == -ECANCELED || res == -ENODEV; }

}  // namespace

struct UringTransport::Entry {
  std::unique_ptr<uring_abi::ReqHeader> header = std::make_unique<uring_abi::ReqHeader>();
  char* buf = nullptr;  // kPrefix + payload_size, page-aligned
  size_t payload_size = 0;
  struct iovec iov[2] {};
  std::atomic<uint64_t> unique{0};  // the request being served (0: none)
  std::atomic<bool> replied{false};

  explicit Entry(size_t payload) : payload_size(payload) {
    buf = static_cast<char*>(std::aligned_alloc(4096, kPrefix + payload));
    if (!buf) throw std::bad_alloc();
    iov[0] = {header.get(), sizeof(uring_abi::ReqHeader)};
    iov[1] = {buf + kPrefix, payload};
  }
  ~Entry() { std::free(buf); }
  Entry(const Entry&) = delete;
  Entry& operator=(const Entry&) = delete;
  char* payload() { return buf + kPrefix; }
};

std::string uring_module_param() {
  std::ifstream in("/sys/module/fuse/parameters/enable_uring");
  std::string v;
  if (!(in >> v)) return "";
  return v;
}

unsigned possible_cpus() {
  // "0-3" or "0,2-5": the kernel numbers queues by CPU id, so the highest id counts.
  std::ifstream in("/sys/devices/system/cpu/possible");
  std::string text;
  unsigned highest = 0;
  if (in >> text) {
    std::istringstream s(text);
    std::string part;
    while (std::getline(s, part, ',')) {
      const auto dash = part.find('-');
      const std::string last = dash == std::string::npos ? part : part.substr(dash + 1);
      highest = std::max(highest, static_cast<unsigned>(std::strtoul(last.c_str(), nullptr, 10)));
    }
    return highest + 1;
  }
  const long n = ::sysconf(_SC_NPROCESSORS_CONF);
  return n > 0 ? static_cast<unsigned>(n) : 1;
}

UringTransport::UringTransport(Config config) : config_(config) {
  // Made before the transport is published to the writev hook, which searches them.
  const unsigned n = config_.queues * config_.threads_per_queue;
  for (unsigned i = 0; i < n; ++i) entries_.push_back(std::make_unique<Entry>(config_.payload_size));
}

UringTransport::~UringTransport() { stop(); }

std::string UringTransport::start() {
  stop_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!stop_fd_) return std::string("eventfd: ") + std::strerror(errno);
  const auto n = static_cast<unsigned>(entries_.size());
  // No signal for the ring threads: SIGTERM must reach the loop's thread (session.hpp).
  sigset_t all, old;
  ::sigfillset(&all);
  ::pthread_sigmask(SIG_BLOCK, &all, &old);
  for (unsigned i = 0; i < n; ++i) {
    threads_.emplace_back([this, i] { run(i % config_.queues, entries_[i].get()); });
  }
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  return "";
}

void UringTransport::stop() {
  if (threads_.empty()) return;
  stopping_.store(true, std::memory_order_release);
  const uint64_t one = 1;
  const ssize_t w = ::write(stop_fd_.get(), &one, sizeof one);
  (void)w;  // an eventfd write of 1 only fails on overflow
  for (auto& t : threads_) t.join();
  threads_.clear();
}

namespace {
// A free SQE (the ring has room for the two this thread ever queues at once).
io_uring_sqe* next_sqe(io_uring* ring) {
  io_uring_sqe* sqe = ::io_uring_get_sqe(ring);
  while (!sqe) {
    ::io_uring_submit(ring);
    sqe = ::io_uring_get_sqe(ring);
  }
  return sqe;
}

void prep_cmd(io_uring_sqe* sqe, int dev_fd, uint32_t cmd, uint16_t qid, uint64_t commit_id,
              UringTransport::Entry* entry, const struct iovec* iov) {
  // SQE128: the command area (sqe->cmd) runs into the second half.
  std::memset(static_cast<void*>(sqe), 0, 2 * sizeof(io_uring_sqe));
  sqe->opcode = IORING_OP_URING_CMD;
  sqe->fd = dev_fd;
  sqe->cmd_op = cmd;
  sqe->user_data = reinterpret_cast<uint64_t>(entry);
  if (iov) {
    sqe->addr = reinterpret_cast<uint64_t>(iov);
    sqe->len = 2;  // header, payload
  }
  uring_abi::CmdReq req{};
  req.commit_id = commit_id;
  req.qid = qid;
  std::memcpy(sqe->cmd, &req, sizeof req);
}
}  // namespace

void UringTransport::run(unsigned qid, Entry* entry) {
  ::pthread_setname_np(::pthread_self(), "portalfs-uring");
  io_uring ring{};
  // The kernel copies a request into the entry in task work of this thread. DEFER_TASKRUN
  // runs it when this thread waits for completions, and wakes the wait: with COOP_TASKRUN
  // alone a thread asleep in io_uring_enter is not woken, and the request waits forever.
  int rc = ::io_uring_queue_init(4, &ring, IORING_SETUP_SQE128 | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN);
  if (rc < 0) {
    if (!failed_logged_.exchange(true)) {
      common::log(common::LogLevel::warn,
                  std::string("FUSE over io_uring: cannot set up a ring: ") + std::strerror(-rc));
    }
    return;
  }
  current_entry = entry;
  io_uring_sqe* sqe = next_sqe(&ring);
  ::io_uring_prep_poll_add(sqe, stop_fd_.get(), POLLIN);
  sqe->user_data = 0;
  sqe = next_sqe(&ring);
  prep_cmd(sqe, config_.dev_fd, uring_abi::kCmdRegister, static_cast<uint16_t>(qid), 0, entry, entry->iov);
  for (;;) {
    rc = ::io_uring_submit_and_wait(&ring, 1);
    if (rc < 0 && rc != -EINTR) break;
    io_uring_cqe* cqe = nullptr;
    if (::io_uring_peek_cqe(&ring, &cqe) != 0 || !cqe) continue;
    const uint64_t tag = cqe->user_data;
    const int res = cqe->res;
    ::io_uring_cqe_seen(&ring, cqe);
    if (tag == 0) break;  // stop()
    if (res < 0) {
      // The connection ended (unmount, abort) or the kernel refused the entry (enable_uring
      // off, a bad buffer): the kernel keeps using /dev/fuse until every queue is registered.
      if (!connection_gone(res) && !stopping_.load() && !failed_logged_.exchange(true)) {
        common::log(common::LogLevel::warn,
                    std::string("FUSE over io_uring: the kernel refused a ring entry: ") + std::strerror(-res));
      }
      break;
    }
    // A request: fuse_in_header in in_out, the op's header in op_in, the rest in the payload.
    auto* h = entry->header.get();
    InHeader in;
    std::memcpy(&in, h->in_out, sizeof in);
    const uint32_t payload = h->ent.payload_sz;
    const uint64_t commit_id = h->ent.commit_id;
    const size_t op_len = in.len - sizeof in - payload;  // the op's header: what len has besides
    if (in.len < sizeof in + payload || op_len > uring_abi::kOpInOutSize || payload > entry->payload_size) {
      common::log_once(common::LogLevel::error, "uring-bad-request",
                       "FUSE over io_uring: a request of unexpected size (opcode " +
                           std::to_string(in.opcode) + "): answered EIO");
      OutHeader out{sizeof(OutHeader), -EIO, in.unique};
      std::memcpy(h->in_out, &out, sizeof out);
      h->ent.payload_sz = 0;
    } else {
      char* start = entry->payload() - op_len - sizeof in;
      std::memcpy(start, &in, sizeof in);
      std::memcpy(start + sizeof in, h->op_in, op_len);
      entry->replied.store(false, std::memory_order_relaxed);
      entry->unique.store(in.unique, std::memory_order_release);
      fuse_buf buf{};
      buf.size = in.len;
      buf.mem = start;
      SessionIo::note_request(start, in.len);
      ::fuse_session_process_buf(config_.session, &buf);
      // Most replies are written before the op returns; one written later by another thread
      // (deliver()) is waited for.
      entry->replied.wait(false, std::memory_order_acquire);
      entry->unique.store(0, std::memory_order_relaxed);
      requests_.fetch_add(1, std::memory_order_relaxed);
    }
    sqe = next_sqe(&ring);
    prep_cmd(sqe, config_.dev_fd, uring_abi::kCmdCommitAndFetch, static_cast<uint16_t>(qid), commit_id, entry,
             nullptr);
  }
  current_entry = nullptr;
  ::io_uring_queue_exit(&ring);  // cancels the entry the kernel still holds
}

bool UringTransport::deliver(const struct iovec* iov, int count) {
  if (count < 1 || iov[0].iov_len < sizeof(OutHeader)) return false;
  OutHeader out;
  std::memcpy(&out, iov[0].iov_base, sizeof out);
  if (out.unique == 0) return false;  // a notification: /dev/fuse's
  Entry* e = current_entry;
  if (!e || e->unique.load(std::memory_order_relaxed) != out.unique) {
    e = nullptr;
    for (auto& x : entries_) {
      if (x->unique.load(std::memory_order_acquire) == out.unique) {
        e = x.get();
        break;
      }
    }
    if (!e) return false;
  }
  // The out header goes to in_out, everything after it to the payload.
  auto* h = e->header.get();
  size_t copied = 0;
  bool fits = true;
  for (int i = 0; i < count; ++i) {
    const char* p = static_cast<const char*>(iov[i].iov_base);
    size_t n = iov[i].iov_len;
    if (i == 0) {
      p += sizeof out;
      n -= sizeof out;
    }
    if (copied + n > e->payload_size) {
      fits = false;
      break;
    }
    std::memmove(e->payload() + copied, p, n);
    copied += n;
  }
  if (!fits) {
    out.error = -EIO;
    copied = 0;
  }
  out.len = static_cast<uint32_t>(sizeof out + copied);
  std::memset(h->in_out, 0, sizeof h->in_out);
  std::memcpy(h->in_out, &out, sizeof out);
  h->ent.payload_sz = static_cast<uint32_t>(copied);
  e->replied.store(true, std::memory_order_release);
  if (e != current_entry) e->replied.notify_one();
  return true;
}

}  // namespace portalfs::fuse
