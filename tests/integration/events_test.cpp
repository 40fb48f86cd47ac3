// SPDX-License-Identifier: MIT
// Change events across views (fuse/events.cpp): an inotify watcher in app B's view hears of
// what app A changes through its own view of the same directory, with the events a local file
// system gives, each within a second.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <future>
#include <set>
#include <functional>
#include <thread>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tests/integration/fs_helpers.hpp"
#include "tests/integration/mounted_fs.hpp"

namespace portalfs::testutil {
namespace {

using namespace std::chrono_literals;

constexpr uint32_t kChanges = IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_MODIFY |
                              IN_CLOSE_WRITE | IN_ATTRIB | IN_DELETE_SELF;

struct Ev {
  uint32_t mask;
  uint32_t cookie;
  std::string name;
};

// An inotify instance; closed before the fixture unmounts (a watch pins its inode).
class Watcher {
 public:
  Watcher() : fd_(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) {}
  ~Watcher() { ::close(fd_); }
  Watcher(const Watcher&) = delete;
  Watcher& operator=(const Watcher&) = delete;

  int add(const std::string& path, uint32_t mask = kChanges) {
    return ::inotify_add_watch(fd_, path.c_str(), mask);
  }

  /// The first event with all of `mask`'s bits for `name` (taken; others are kept), within
  /// `timeout`.
  std::optional<Ev> next(uint32_t mask, const std::string& name, std::chrono::milliseconds timeout = 1000ms) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      for (auto it = pending_.begin(); it != pending_.end(); ++it) {
        if ((it->mask & mask) == mask && it->name == name) {
          Ev e = *it;
          pending_.erase(it);
          return e;
        }
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      alignas(inotify_event) char buf[8192];
      ssize_t n = ::read(fd_, buf, sizeof(buf));
      for (ssize_t off = 0; off < n;) {
        const auto* ie = reinterpret_cast<const inotify_event*>(buf + off);
        pending_.push_back({ie->mask, ie->cookie, ie->len ? std::string(ie->name) : std::string()});
        off += static_cast<ssize_t>(sizeof(inotify_event) + ie->len);
      }
    }
  }

 private:
  int fd_;
  std::vector<Ev> pending_;
};

// Serves `backing` as the share "s" to each app in its mode; their views' paths.
std::vector<std::string> serve(MountedFs& m, const std::string& backing,
                               const std::vector<std::pair<std::string, policy::Access>>& apps) {
  std::filesystem::create_directories(backing);
  policy::ViewSpecs specs;
  for (const auto& [app, access] : apps) specs.push_back(m.shared_view(app, "s", backing, access));
  m.set_views(specs);
  std::vector<std::string> paths;
  for (const auto& spec : specs) paths.push_back(m.path(spec));
  return paths;
}

class Events : public ::testing::Test {
 protected:
  void SetUp() override {
    PORTALFS_REQUIRE_MOUNT(m_);
    backing_ = m_.storage() + "/media";
    auto paths = serve(m_, backing_, {{"a", policy::Access::read_write}, {"b", policy::Access::read}});
    a_ = paths[0];
    b_ = paths[1];
  }
  MountedFs m_;
  std::string backing_, a_, b_;
};

TEST_F(Events, AWatcherInBHearsWhatAChangesInTheSameDirectory) {
  Watcher w;
  ASSERT_GE(w.add(b_), 0) << std::strerror(errno);

  write_file(a_ + "/photo.jpg", "jpeg bytes");
  EXPECT_TRUE(w.next(IN_CREATE, "photo.jpg")) << "no IN_CREATE";
  EXPECT_TRUE(w.next(IN_MODIFY, "photo.jpg")) << "no IN_MODIFY";
  EXPECT_TRUE(w.next(IN_CLOSE_WRITE, "photo.jpg")) << "no IN_CLOSE_WRITE";

  ASSERT_EQ(sys(::chmod((a_ + "/photo.jpg").c_str(), 0600)), kOk);
  EXPECT_TRUE(w.next(IN_ATTRIB, "photo.jpg")) << "no IN_ATTRIB";

  ASSERT_EQ(sys(::rename((a_ + "/photo.jpg").c_str(), (a_ + "/renamed.jpg").c_str())), kOk);
  auto from = w.next(IN_MOVED_FROM, "photo.jpg");
  ASSERT_TRUE(from) << "no IN_MOVED_FROM";
  auto to = w.next(IN_MOVED_TO, "renamed.jpg");
  ASSERT_TRUE(to) << "no IN_MOVED_TO";
  EXPECT_NE(from->cookie, 0u);
  EXPECT_EQ(from->cookie, to->cookie) << "the two halves of a rename carry one cookie";

  ASSERT_EQ(sys(::mkdir((a_ + "/album").c_str(), 0755)), kOk);
  EXPECT_TRUE(w.next(IN_CREATE | IN_ISDIR, "album")) << "no IN_CREATE for a directory";
  ASSERT_EQ(sys(::rmdir((a_ + "/album").c_str())), kOk);
  EXPECT_TRUE(w.next(IN_DELETE | IN_ISDIR, "album")) << "no IN_DELETE for a directory";

  ASSERT_EQ(sys(::symlink("renamed.jpg", (a_ + "/link").c_str())), kOk);
  EXPECT_TRUE(w.next(IN_CREATE, "link")) << "no IN_CREATE for a symlink";

  ASSERT_EQ(sys(::unlink((a_ + "/renamed.jpg").c_str())), kOk);
  EXPECT_TRUE(w.next(IN_DELETE, "renamed.jpg")) << "no IN_DELETE";

  // What B sees after the echoes is what is on disk.
  EXPECT_EQ(sys(::access((b_ + "/renamed.jpg").c_str(), F_OK)), Err{ENOENT});
  EXPECT_EQ(sys(::access((b_ + "/photo.jpg").c_str(), F_OK)), Err{ENOENT});
  struct stat st {};
  ASSERT_EQ(sys(::lstat((b_ + "/link").c_str(), &st)), kOk);
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  ASSERT_EQ(sys(::unlink((a_ + "/link").c_str())), kOk);
}

TEST_F(Events, AWatchOnAFileInBHearsItsWritesCloseAndDeletion) {
  write_file(a_ + "/song.flac", "v1");
  Watcher w;
  ASSERT_GE(w.add(b_ + "/song.flac"), 0) << std::strerror(errno);
  {
    auto fd = open_fd(a_ + "/song.flac", O_WRONLY | O_APPEND);
    ASSERT_TRUE(fd);
    ASSERT_EQ(::write(fd.get(), "+v2", 3), 3);
    EXPECT_TRUE(w.next(IN_MODIFY, "")) << "no IN_MODIFY while A still writes";
    EXPECT_FALSE(w.next(IN_CLOSE_WRITE, "", 300ms)) << "IN_CLOSE_WRITE before A closed";
  }
  EXPECT_TRUE(w.next(IN_CLOSE_WRITE, "")) << "no IN_CLOSE_WRITE when A closed";
  EXPECT_EQ(read_file(b_ + "/song.flac"), "v1+v2");
  ASSERT_EQ(sys(::unlink((a_ + "/song.flac").c_str())), kOk);
  EXPECT_TRUE(w.next(IN_DELETE_SELF, "")) << "no IN_DELETE_SELF";
}

TEST_F(Events, AWatcherInADirectoryMadeByAnotherViewHearsItsChildren) {
  ASSERT_EQ(sys(::mkdir((a_ + "/inbox").c_str(), 0755)), kOk);
  Watcher w;
  ASSERT_GE(w.add(b_ + "/inbox"), 0) << std::strerror(errno);
  for (int i = 0; i < 20; ++i) write_file(a_ + "/inbox/f" + std::to_string(i), "x");
  for (int i = 0; i < 20; ++i) {
    EXPECT_TRUE(w.next(IN_CLOSE_WRITE, "f" + std::to_string(i))) << "f" << i;
  }
  // Moved out to another directory: B's kernel learnt of it from its created echo.
  ASSERT_EQ(sys(::mkdir((a_ + "/elsewhere").c_str(), 0755)), kOk);
  ASSERT_EQ(sys(::rename((a_ + "/inbox/f0").c_str(), (a_ + "/elsewhere/f0").c_str())), kOk);
  EXPECT_TRUE(w.next(IN_MOVED_FROM, "f0")) << "no event for a file moved away";
  EXPECT_EQ(read_file(b_ + "/elsewhere/f0"), "x");
}

TEST_F(Events, ACreateOnlyViewHearsNothingOfOthersFiles) {
  auto spec = m_.shared_view("c", "s", backing_, policy::Access::create_only);
  auto views = m_.views();
  views.push_back(spec);
  m_.set_views(views);
  // The new layout's invalidations first: a watch set before them could be on a dentry they drop.
  ASSERT_TRUE(m_.fs().wait_invalidations(std::chrono::seconds(5)));
  const std::string c = m_.path(spec);
  Watcher w, control;
  ASSERT_GE(w.add(c), 0) << std::strerror(errno);
  ASSERT_GE(control.add(b_), 0) << std::strerror(errno);
  write_file(a_ + "/private.txt", "not for c");
  ASSERT_EQ(sys(::unlink((a_ + "/private.txt").c_str())), kOk);
  // B's watcher is the control: the events were raised, C's view hid them.
  EXPECT_TRUE(control.next(IN_CREATE, "private.txt"));
  EXPECT_TRUE(control.next(IN_DELETE, "private.txt"));
  EXPECT_FALSE(w.next(IN_CREATE, "private.txt", 500ms)) << "a create-only view heard of another app's file";
  EXPECT_FALSE(w.next(IN_DELETE, "private.txt", 500ms)) << "a create-only view heard of another app's file";
}

// Changes made on the host, in the backing directory, by another process than the daemon.
class HostEvents : public ::testing::Test {
 protected:
  void SetUp() override {
    PORTALFS_REQUIRE_MOUNT(m_);
    backing_ = m_.storage() + "/media";
    b_ = serve(m_, backing_, {{"b", policy::Access::read}})[0];
  }
  // The host's side: a child process (portalfsd skips its own changes).
  static void on_host(const std::function<int()>& fn) { ASSERT_EQ(run_as(0, 0, fn), 0); }

  // Long timeouts: whatever B sees at once came from an invalidation, not an expiry.
  MountedFs m_{fuse::Options{.entry_timeout = 60, .attr_timeout = 60}};
  std::string backing_, b_;
};

TEST_F(HostEvents, AWatcherInAViewHearsChangesMadeOnTheHost) {
  Watcher w;
  ASSERT_GE(w.add(b_), 0) << std::strerror(errno);
  const std::string f = backing_ + "/scan.pdf", g = backing_ + "/renamed.pdf";
  on_host([&] {
    int fd = ::open(f.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0 || ::write(fd, "pdf", 3) != 3) return 1;
    return ::close(fd);
  });
  EXPECT_TRUE(w.next(IN_CREATE, "scan.pdf", 2000ms)) << "no IN_CREATE";
  EXPECT_TRUE(w.next(IN_MODIFY, "scan.pdf", 2000ms)) << "no IN_MODIFY";
  EXPECT_TRUE(w.next(IN_CLOSE_WRITE, "scan.pdf", 2000ms)) << "no IN_CLOSE_WRITE";
  on_host([&] { return ::chmod(f.c_str(), 0600); });
  EXPECT_TRUE(w.next(IN_ATTRIB, "scan.pdf", 2000ms)) << "no IN_ATTRIB";
  on_host([&] { return ::rename(f.c_str(), g.c_str()); });
  auto from = w.next(IN_MOVED_FROM, "scan.pdf", 2000ms);
  auto to = w.next(IN_MOVED_TO, "renamed.pdf", 2000ms);
  ASSERT_TRUE(from && to) << "no IN_MOVED_FROM/IN_MOVED_TO";
  EXPECT_EQ(from->cookie, to->cookie);
  on_host([&] { return ::mkdir((backing_ + "/dir").c_str(), 0755); });
  EXPECT_TRUE(w.next(IN_CREATE | IN_ISDIR, "dir", 2000ms)) << "no IN_CREATE for a directory";
  on_host([&] { return ::rmdir((backing_ + "/dir").c_str()); });
  EXPECT_TRUE(w.next(IN_DELETE | IN_ISDIR, "dir", 2000ms)) << "no IN_DELETE for a directory";
  on_host([&] { return ::unlink(g.c_str()); });
  EXPECT_TRUE(w.next(IN_DELETE, "renamed.pdf", 2000ms)) << "no IN_DELETE";
}

// An app's writes to a file of its data view pass through to the backing file (passthrough.hpp),
// so the host watch reads them as changes made on the host. Its own view raised their events
// already (the kernel does, for writes through a FUSE file): it hears each one once, and no
// open or close that the app did not make.
TEST(PassthroughEvents, AnAppsOwnWritesAreHeardOnceInItsView) {
  MountedFs m;
  PORTALFS_REQUIRE_MOUNT(m);
  if (!m.fs().passthrough().active()) GTEST_FAIL() << "this kernel took no passthrough";
  const std::string data = m.add_view("a", ViewKind::data, "d");
  Watcher w;
  ASSERT_GE(w.add(data, kChanges | IN_OPEN | IN_CLOSE_NOWRITE), 0) << std::strerror(errno);
  // The app: a process of its own (the host watch skips the daemon's, which is this one).
  const std::string db = data + "/db";
  ASSERT_EQ(run_as(0, 0, [&] {
              const int fd = ::open(db.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
              if (fd < 0 || ::pwrite(fd, "abc", 3, 0) != 3) return 1;
              std::this_thread::sleep_for(300ms);  // the host watch reads the write meanwhile
              if (::pwrite(fd, "def", 3, 3) != 3) return 1;
              std::this_thread::sleep_for(300ms);
              return ::close(fd);
            }),
            0);
  EXPECT_TRUE(w.next(IN_CREATE, "db"));
  EXPECT_TRUE(w.next(IN_OPEN, "db"));
  EXPECT_TRUE(w.next(IN_MODIFY, "db"));  // one for both: inotify merges a repeat of the last event
  EXPECT_TRUE(w.next(IN_CLOSE_WRITE, "db"));
  // Nothing else: no echo of the writes, nor an open and close of the echo's own.
  for (uint32_t mask : {IN_MODIFY, IN_OPEN, IN_CLOSE_WRITE, IN_CLOSE_NOWRITE}) {
    EXPECT_FALSE(w.next(mask, "db", 700ms)) << "an extra event " << std::hex << mask;
  }
  EXPECT_EQ(read_file(m.storage() + "/a-d/db"), "abcdef");
}

// A host process writing a file that an app holds open in passthrough: the host's write (its
// pid is not the app's) reaches the app's view, though the app's own writes to the same
// backing file are not echoed there (above).
TEST(PassthroughEvents, AHostWriteToAFileAnAppHoldsOpenIsHeardInItsView) {
  MountedFs m;
  PORTALFS_REQUIRE_MOUNT(m);
  if (!m.fs().passthrough().active()) GTEST_FAIL() << "this kernel took no passthrough";
  const std::string data = m.add_view("a", ViewKind::data, "d");
  const std::string db = data + "/db", backing = m.storage() + "/a-d/db";
  Watcher w;
  ASSERT_GE(w.add(data), 0) << std::strerror(errno);
  // The app: a child that writes "abc", says so, and holds the file open until told.
  int said[2], go[2];
  ASSERT_EQ(::pipe2(said, O_CLOEXEC), 0);
  ASSERT_EQ(::pipe2(go, O_CLOEXEC), 0);
  const pid_t app = ::fork();
  ASSERT_GE(app, 0);
  if (app == 0) {
    const int fd = ::open(db.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
    char c = fd >= 0 && ::pwrite(fd, "abc", 3, 0) == 3 ? 'y' : 'n';
    if (::write(said[1], &c, 1) != 1 || ::read(go[0], &c, 1) != 1) ::_exit(1);
    ::_exit(::close(fd) == 0 ? 0 : 1);
  }
  ::close(said[1]);
  ::close(go[0]);
  char c = 0;
  ASSERT_EQ(::read(said[0], &c, 1), 1);
  EXPECT_EQ(c, 'y') << "the app could not write";
  EXPECT_EQ(m.fs().passthrough().open_backings(), 1u) << "the app's file does not pass through";
  EXPECT_TRUE(w.next(IN_MODIFY, "db")) << "the app's own write";
  EXPECT_FALSE(w.next(IN_MODIFY, "db", 500ms)) << "the app's own write was heard twice";

  ASSERT_EQ(run_as(0, 0, [&] {
              const int fd = ::open(backing.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
              if (fd < 0 || ::write(fd, "def", 3) != 3) return 1;
              return ::close(fd);
            }),
            0);
  EXPECT_TRUE(w.next(IN_MODIFY, "db", 2000ms)) << "the host's write was not heard in the app's view";
  const auto deadline = std::chrono::steady_clock::now() + 2s;
  struct stat st {};
  while ((::stat(db.c_str(), &st) != 0 || st.st_size != 6) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(st.st_size, 6) << "the app's view shows the size before the host's write";

  c = 'x';
  EXPECT_EQ(::write(go[1], &c, 1), 1);
  ::close(go[1]);
  ::close(said[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(app, &status, 0), app);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ(read_file(backing), "abcdef");
}

TEST_F(HostEvents, AHostChangeReachesWhatAViewCachedAtOnce) {
  const std::string f = backing_ + "/notes.txt";
  on_host([&] {
    int fd = ::open(f.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0 || ::write(fd, "v1", 2) != 2) return 1;
    return ::close(fd);
  });
  // B caches a negative entry for "later.txt" and the attributes of notes.txt for 60 s.
  EXPECT_EQ(sys(::access((b_ + "/later.txt").c_str(), F_OK)), Err{ENOENT});
  struct stat st {};
  ASSERT_EQ(sys(::stat((b_ + "/notes.txt").c_str(), &st)), kOk);
  ASSERT_EQ(st.st_size, 2);
  on_host([&] {
    int fd = ::open(f.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd < 0 || ::write(fd, "+v2", 3) != 3) return 1;
    ::close(fd);
    fd = ::open((backing_ + "/later.txt").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    return fd < 0 ? 1 : ::close(fd);
  });
  const auto deadline = std::chrono::steady_clock::now() + 2s;
  bool fresh = false;
  while (!fresh && std::chrono::steady_clock::now() < deadline) {
    fresh = ::stat((b_ + "/notes.txt").c_str(), &st) == 0 && st.st_size == 5 &&
            ::access((b_ + "/later.txt").c_str(), F_OK) == 0;
    if (!fresh) std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(fresh) << "B still shows what it cached before the host's change";
  EXPECT_EQ(read_file(b_ + "/notes.txt"), "v1+v2");
}


// Overflows (events.cpp): a queue that drops changes ends in every view dropping what it
// cached. The notifier's thread is held meanwhile, so that the queues fill for sure; the
// timeouts are long, so that what the views show afterwards came from that flush.
class Overflow : public ::testing::Test {
 protected:
  void start(fuse::Options o) {
    o.entry_timeout = o.attr_timeout = 60;
    m_.emplace(o);
    PORTALFS_REQUIRE_MOUNT(*m_);
    backing_ = m_->storage() + "/media";
    auto paths = serve(*m_, backing_, {{"a", policy::Access::read_write}, {"b", policy::Access::read}});
    a_ = paths[0];
    b_ = paths[1];
  }
  // Both views cache keep.txt's attributes, gone<i> and the absence of later<i>.
  void cache_in_views() {
    write_file(backing_ + "/keep.txt", "v1");
    for (int i = 0; i < kN; ++i) write_file(backing_ + "/gone" + std::to_string(i), "x");
    for (const auto& v : {a_, b_}) {
      struct stat st {};
      ASSERT_EQ(sys(::stat((v + "/keep.txt").c_str(), &st)), kOk);
      for (int i = 0; i < kN; ++i) {
        ASSERT_EQ(sys(::stat((v + "/gone" + std::to_string(i)).c_str(), &st)), kOk);
        ASSERT_EQ(sys(::access((v + "/later" + std::to_string(i)).c_str(), F_OK)), Err{ENOENT});
      }
      list_dir(v);
    }
  }
  // Holds the notifier until release().
  void hold_notifier() {
    auto held = std::make_shared<std::promise<void>>();
    ASSERT_TRUE(m_->fs().notifier().run_later([f = release_.get_future().share(), held] {
      held->set_value();
      f.wait();
    }));
    held->get_future().wait();
  }
  void release() {
    if (!released_) release_.set_value();
    released_ = true;
  }
  void TearDown() override { release(); }  // a failed test must not leave the notifier held
  // Whether every view shows what the backing directory holds, within 2 s.
  void expect_true_state_within_2s() {
    const auto want = names(backing_);
    struct stat host {};
    ASSERT_EQ(::stat((backing_ + "/keep.txt").c_str(), &host), 0);
    const auto deadline = std::chrono::steady_clock::now() + 2s;
    for (const auto& v : {a_, b_}) {
      bool right = false;
      std::string seen;
      while (!right && std::chrono::steady_clock::now() < deadline) {
        struct stat st {};
        right = names(v) == want && ::stat((v + "/keep.txt").c_str(), &st) == 0 && st.st_size == host.st_size;
        for (int i = 0; right && i < kN; ++i) {
          right = ::access((v + "/gone" + std::to_string(i)).c_str(), F_OK) != 0 && errno == ENOENT &&
                  ::access((v + "/later" + std::to_string(i)).c_str(), F_OK) == 0;
        }
        if (!right) std::this_thread::sleep_for(20ms);
      }
      EXPECT_TRUE(right) << v << " still shows what it cached before the overflow";
    }
  }
  static std::set<std::string> names(const std::string& dir) {
    auto v = list_dir(dir);
    return {v.begin(), v.end()};
  }
  static constexpr int kN = 20;
  std::optional<MountedFs> m_;
  std::promise<void> release_;
  bool released_ = false;
  std::string backing_, a_, b_;
};

// The daemon's events queue: host changes whose echoes (which carry the names' invalidations)
// do not fit.
TEST_F(Overflow, AFullEventsQueueEndsWithEveryViewShowingTheHostsState) {
  start(fuse::Options{.events_queue = 4});
  if (HasFatalFailure() || IsSkipped()) return;
  cache_in_views();
  Watcher w;
  ASSERT_GE(w.add(b_), 0) << std::strerror(errno);
  hold_notifier();
  ASSERT_EQ(run_as(0, 0, [&] {
              int fd = ::open((backing_ + "/keep.txt").c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
              if (fd < 0 || ::write(fd, "+v2", 3) != 3) return 1;
              ::close(fd);
              for (int i = 0; i < kN; ++i) {
                if (::unlink((backing_ + "/gone" + std::to_string(i)).c_str()) != 0) return 1;
                fd = ::open((backing_ + "/later" + std::to_string(i)).c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
                if (fd < 0) return 1;
                ::close(fd);
              }
              return 0;
            }),
            0);
  // The host watch reads them while the notifier is held: the queue fills and drops.
  const auto deadline = std::chrono::steady_clock::now() + 2s;
  while (m_->fs().stats().events_queued < 4 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  std::this_thread::sleep_for(200ms);  // the rest of the host's events, dropped
  const size_t before = m_->fs().notifier().flushes();
  release();
  expect_true_state_within_2s();
  EXPECT_GT(m_->fs().notifier().flushes(), before) << "the queue did not overflow";
}

// The notifier's own queue: the invalidations of changes made through view A (no events here,
// so that the invalidations are all that tells B).
TEST_F(Overflow, AFullInvalidationQueueEndsWithEveryViewShowingTheTrueState) {
  start(fuse::Options{.events = false, .invalidations_queue = 4});
  if (HasFatalFailure() || IsSkipped()) return;
  cache_in_views();
  hold_notifier();
  write_file(a_ + "/keep.txt", "v1+v2");
  for (int i = 0; i < kN; ++i) {
    ASSERT_EQ(sys(::unlink((a_ + "/gone" + std::to_string(i)).c_str())), kOk);
    write_file(a_ + "/later" + std::to_string(i), "");
  }
  const size_t before = m_->fs().notifier().flushes();
  release();
  expect_true_state_within_2s();
  EXPECT_GT(m_->fs().notifier().flushes(), before) << "the queue did not overflow";
}

}  // namespace
}  // namespace portalfs::testutil
