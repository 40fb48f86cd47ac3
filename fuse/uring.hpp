// SPDX-License-Identifier: MIT
#pragma once

// FUSE over io_uring (Linux 6.14+, CONFIG_FUSE_IO_URING, the fuse module's enable_uring):
// the kernel hands requests to ring entries the daemon registered, and takes each reply with
// the next fetch, in one io_uring_enter instead of a read and a write of /dev/fuse. libfuse
// gained it in 3.18; Debian's 3.14 has none of it, so the session's I/O layer
// (session_io.hpp) does it:
//   - INIT (still on /dev/fuse): the reply asks for FUSE_OVER_IO_URING when the kernel offers
//     it; once the kernel took the reply, start() registers the entries;
//   - the kernel switches to the ring once every queue (one per possible CPU: it queues a
//     request on the queue of the CPU its caller runs on) has an entry; until then, and for
//     FORGET and INTERRUPT always, requests still come through /dev/fuse, served by libfuse's
//     loop as before;
//   - each request from the ring goes to libfuse's dispatcher (fuse_session_process_buf) as
//     if read from /dev/fuse; its reply, which libfuse writes through the writev hook, is
//     caught there by its unique (deliver()) and copied into the entry, which the entry's
//     thread commits with the next fetch.
// Each queue has several threads, each with its own io_uring and one entry: an op that
// blocks (a lock, a slow disk) holds one entry, not the queue.
//
// The protocol's structs are not in Debian 12's <linux/fuse.h> (6.1): they are here, as in
// the kernel's include/uapi/linux/fuse.h (protocol 7.42).

#include <sys/uio.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/unique_fd.hpp"
#include "fuse/fuse_api.hpp"

namespace portalfs::fuse {

namespace uring_abi {
constexpr uint32_t kOverIoUring2 = 1u << (41 - 32);  // flags2: FUSE_OVER_IO_URING
constexpr size_t kInOutHeaderSize = 128;            // FUSE_URING_IN_OUT_HEADER_SZ
constexpr size_t kOpInOutSize = 128;                // FUSE_URING_OP_IN_OUT_SZ
constexpr uint32_t kCmdRegister = 1;                // FUSE_IO_URING_CMD_REGISTER
constexpr uint32_t kCmdCommitAndFetch = 2;          // FUSE_IO_URING_CMD_COMMIT_AND_FETCH
struct EntInOut {                                   // struct fuse_uring_ent_in_out
  uint64_t flags;
  uint64_t commit_id;  // the request's unique, given back with the commit
  uint32_t payload_sz;
  uint32_t padding;
  uint64_t reserved;
};
struct ReqHeader {  // struct fuse_uring_req_header: iov[0] of an entry
  char in_out[kInOutHeaderSize];  // fuse_in_header (request) / fuse_out_header (reply)
  char op_in[kOpInOutSize];       // the op's own header: the request's first argument
  EntInOut ent;
};
struct CmdReq {  // struct fuse_uring_cmd_req, in the SQE's command area (SQE128)
  uint64_t flags;
  uint64_t commit_id;
  uint16_t qid;
  uint8_t padding[6];
};
static_assert(sizeof(ReqHeader) == 288);
static_assert(sizeof(CmdReq) == 24);
}  // namespace uring_abi

/// The kernel's switch for FUSE over io_uring (/sys/module/fuse/parameters/enable_uring): Y,
/// N, or "" when the kernel has no such parameter.
std::string uring_module_param();

class UringTransport {
 public:
  struct Config {
    fuse_session* session = nullptr;
    int dev_fd = -1;             // the connection's /dev/fuse
    size_t payload_size = 0;     // the kernel's max_payload_sz: max(8 KiB, max_write, max_pages pages)
    unsigned queues = 0;         // possible CPUs
    unsigned threads_per_queue = 0;
  };
  explicit UringTransport(Config config);
  ~UringTransport();  // stop()
  UringTransport(const UringTransport&) = delete;
  UringTransport& operator=(const UringTransport&) = delete;

  /// Starts the threads, which register their entries. Returns "" or why it can't.
  std::string start();
  /// Ends the threads (their rings' pending commands are cancelled) and waits for them.
  void stop();

  /// A reply libfuse writes: when it answers a request from the ring, copies it into that
  /// entry (the entry's thread commits it) and returns true; false: /dev/fuse's.
  bool deliver(const struct iovec* iov, int count);

  /// Requests served from the ring so far.
  [[nodiscard]] uint64_t requests() const { return requests_.load(std::memory_order_relaxed); }
  /// Entries the kernel took (registered).
  [[nodiscard]] unsigned registered() const { return registered_.load(std::memory_order_acquire); }
  [[nodiscard]] const Config& config() const { return config_; }

  struct Entry;

 private:
  void run(unsigned qid, Entry* entry);

  Config config_;
  std::vector<std::unique_ptr<Entry>> entries_;
  std::vector<std::thread> threads_;
  common::UniqueFd stop_fd_;  // eventfd: written by stop(), polled by every ring
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> requests_{0};
  std::atomic<unsigned> registered_{0};
  std::atomic<bool> failed_logged_{false};
};

/// The number of queues the kernel makes: its possible CPUs (/sys/devices/system/cpu/possible).
unsigned possible_cpus();

}  // namespace portalfs::fuse
