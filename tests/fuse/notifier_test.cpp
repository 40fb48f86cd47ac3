// SPDX-License-Identifier: MIT
// Notifier against a fake kernel: a FUSE session on custom io whose notifications block until
// the test lets them go, as an invalidation waiting for a lock held by an unserved request does.

#include "fuse/notifier.hpp"

#include <linux/fuse.h>
#include <sys/eventfd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>

namespace portalfs::fuse {
namespace {

using namespace std::chrono_literals;

// The fake kernel: replies go through at once, notifications (unique 0) wait for release().
struct StuckKernel {
  std::mutex mutex;
  std::condition_variable cv;
  bool blocked = false;  // a notification is waiting
  bool released = false;

  void wait_blocked() {
    std::unique_lock lock(mutex);
    cv.wait(lock, [&] { return blocked; });
  }
  void release() {
    std::lock_guard lock(mutex);
    released = true;
    cv.notify_all();
  }
};
StuckKernel* kernel = nullptr;

ssize_t fake_writev(int, struct iovec* iov, int count, void*) {
  ssize_t total = 0;
  for (int i = 0; i < count; ++i) total += static_cast<ssize_t>(iov[i].iov_len);
  fuse_out_header out{};
  std::memcpy(&out, iov[0].iov_base, sizeof(out));
  if (out.unique == 0) {
    std::unique_lock lock(kernel->mutex);
    kernel->blocked = true;
    kernel->cv.notify_all();
    kernel->cv.wait(lock, [] { return kernel->released; });
  }
  return total;
}

ssize_t fake_read(int, void*, size_t, void*) { return 0; }

// A session past INIT (protocol 7.31), so that notifications are sent.
fuse_session* fake_session() {
  static char name[] = "notifier_test";
  char* argv[] = {name};
  fuse_args args = FUSE_ARGS_INIT(1, argv);
  const fuse_lowlevel_ops ops{};
  fuse_session* se = fuse_session_new(&args, &ops, sizeof(ops), nullptr);
  fuse_opt_free_args(&args);
  if (!se) return nullptr;
  static const fuse_custom_io io = {fake_writev, fake_read, nullptr, nullptr};
  if (fuse_session_custom_io(se, &io, ::eventfd(0, EFD_CLOEXEC)) != 0) return nullptr;
  struct {
    fuse_in_header in;
    fuse_init_in init;
  } request{};
  request.in.len = sizeof(request);
  request.in.opcode = FUSE_INIT;
  request.in.unique = 1;
  request.init.major = 7;
  request.init.minor = 31;
  fuse_buf buf{};
  buf.size = sizeof(request);
  buf.mem = &request;
  fuse_session_process_buf(se, &buf);
  return se;
}

// Before: ~Notifier called stop() once; when that timed out the thread was still joinable
// and its destructor called std::terminate. Now it waits (the Session aborts the connection
// first, which releases the invalidation; here the test does).
TEST(NotifierDeathTest, DestroyedWhileAnInvalidationIsStuckWaitsForIt) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        StuckKernel k;
        kernel = &k;
        fuse_session* se = fake_session();
        if (!se) std::_Exit(3);
        std::jthread releaser;  // joined after the Notifier is gone
        {
          Notifier notifier;
          notifier.start(se);
          notifier.inval_inode(NodeRef{42}, 0, 0);
          k.wait_blocked();
          // Longer than stop()'s patience (2 s): the first stop() in the destructor fails.
          releaser = std::jthread([&k] {
            std::this_thread::sleep_for(3s);
            k.release();
          });
        }
        releaser.join();
        fuse_session_destroy(se);
        std::_Exit(0);
      },
      ::testing::ExitedWithCode(0), "still blocked");
}

TEST(Notifier, StopTimesOutWhileStuckThenSucceedsOnceReleased) {
  StuckKernel k;
  kernel = &k;
  fuse_session* se = fake_session();
  ASSERT_NE(se, nullptr);
  {
    Notifier notifier;
    notifier.start(se);
    notifier.inval_entry(NodeRef{1}, "x");
    k.wait_blocked();
    EXPECT_FALSE(notifier.stop(100ms));
    k.release();
    EXPECT_TRUE(notifier.stop(10s));
    EXPECT_TRUE(notifier.stop());  // stopped: nothing to wait for
  }
  fuse_session_destroy(se);
}

}  // namespace
}  // namespace portalfs::fuse
