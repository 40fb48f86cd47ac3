// SPDX-License-Identifier: MIT
// Issue #18: what the daemon finds on disk after a restart is not trusted. An app that swaps a
// directory on the way to its nested data dir for a symlink gets that view refused (EIO), not
// another app's data, a share it was never granted, or the host's /etc. Deleting a tree of
// any depth does not take the daemon down; a kill -9 in a prune is finished at the next start;
// a full disk does not keep the admin from cutting an app off; and what an app wrote into its
// version marker never reaches the admin's terminal.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "common/unique_fd.hpp"
#include "tests/integration/fs_helpers.hpp"
#include "tests/testutil/container_user.hpp"
#include "tests/testutil/daemon_fixture.hpp"

namespace portalfs::testutil {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;

int errno_of(int rc) { return rc == 0 ? 0 : errno; }

class RestartTrust : public DaemonFixture {
 protected:
  std::string view(const std::string& app, const std::string& rest) { return mnt() + "/apps/" + app + "/" + rest; }

  void install(const std::string& name, const std::string& manifest) {
    write_file(dir_ / (name + ".json"), manifest);
    auto r = ctl({"app", "install", dir_ / (name + ".json")});
    ASSERT_EQ(r.code, 0) << r.err;
  }

  void restart() {
    ASSERT_EQ(daemon_->stop(SIGTERM), 0);
    ASSERT_NO_FATAL_FAILURE(start());
  }

  // The nested data dir view of alpha, once its parent "x" became a symlink to `target`:
  // refused with EIO, logged naming the component, and nothing read or written through it.
  void expect_refused_after_restart(const std::string& parent_view, const std::string& nested_view,
                                    const std::string& target, const std::string& victim, uid_t uid = 0) {
    // The app swaps the component in its container (as the container's root when uid is 0).
    ASSERT_EQ(as_container_user(mnt(), uid, uid, [&] {
                if (::rename((parent_view + "/x").c_str(), (parent_view + "/x.old").c_str()) != 0) return errno;
                return errno_of(::symlink(target.c_str(), (parent_view + "/x").c_str()));
              }),
              0);
    ASSERT_NO_FATAL_FAILURE(restart());
    struct stat st {};
    errno = 0;
    EXPECT_EQ(::stat(nested_view.c_str(), &st), -1);
    EXPECT_EQ(errno, EIO);
    errno = 0;
    EXPECT_EQ(::open((nested_view + "/secret.txt").c_str(), O_RDONLY | O_CLOEXEC), -1);
    EXPECT_EQ(errno, EIO);
    EXPECT_EQ(::open((nested_view + "/planted.txt").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644), -1);
    EXPECT_FALSE(fs::exists(victim + "/planted.txt"));
    fs::remove(victim + "/planted.txt");  // should it ever regress: nothing left in /etc
    // Listed, so the app sees an error rather than an absence.
    bool listed = false;
    for (const auto& e : fs::directory_iterator(fs::path(nested_view).parent_path())) {
      listed = listed || e.path() == nested_view;
    }
    EXPECT_TRUE(listed);
    EXPECT_THAT(read_file(dir_ / "daemon.log"), HasSubstr("/x: is a symbolic link; refusing to follow it"));
    // The app's other view still serves.
    write_file(parent_view + "/still.txt", "ok");
    EXPECT_EQ(read_file(parent_view + "/still.txt"), "ok");
  }
};

constexpr const char* kAlpha = R"({"name": "alpha", "v": "1", "data_dirs": ["/data", "/data/x/etc"]})";

TEST_F(RestartTrust, ASymlinkToAnotherAppOnTheWayToANestedDataDir) {
  ASSERT_NO_FATAL_FAILURE(start());
  ASSERT_NO_FATAL_FAILURE(install("beta", R"({"name": "beta", "v": "1", "data_dirs": ["/etc"]})"));
  ASSERT_NO_FATAL_FAILURE(install("alpha", kAlpha));
  write_file(storage() + "/apps/beta/etc/secret.txt", "beta's");
  expect_refused_after_restart(view("alpha", "data/data"), view("alpha", "data/data%2Fx%2Fetc"), "../../beta",
                               storage() + "/apps/beta/etc");
  EXPECT_EQ(read_file(storage() + "/apps/beta/etc/secret.txt"), "beta's");
}

TEST_F(RestartTrust, ASymlinkToAShareTheAppWasNeverGranted) {
  ASSERT_NO_FATAL_FAILURE(start());
  ASSERT_EQ(ctl({"share", "create", "secret"}).code, 0);
  ASSERT_NO_FATAL_FAILURE(install("alpha", kAlpha));
  fs::create_directories(storage() + "/shared/secret/etc");
  write_file(storage() + "/shared/secret/etc/secret.txt", "not alpha's");
  expect_refused_after_restart(view("alpha", "data/data"), view("alpha", "data/data%2Fx%2Fetc"),
                               "../../../shared/secret", storage() + "/shared/secret/etc");
}

TEST_F(RestartTrust, ASymlinkToTheHostRoot) {
  ASSERT_NO_FATAL_FAILURE(start());
  ASSERT_NO_FATAL_FAILURE(install("alpha", kAlpha));
  expect_refused_after_restart(view("alpha", "data/data"), view("alpha", "data/data%2Fx%2Fetc"), "/", "/etc");
  errno = 0;
  EXPECT_EQ(::open(view("alpha", "data/data%2Fx%2Fetc/shadow").c_str(), O_RDONLY | O_CLOEXEC), -1);
  EXPECT_EQ(errno, EIO);
}

// Renaming inside a directory one owns needs no other right: uid 1000 is enough.
TEST_F(RestartTrust, AnUnprivilegedAppOwningTheParentSwapsItsMiddleComponent) {
  ASSERT_NO_FATAL_FAILURE(start());
  ASSERT_NO_FATAL_FAILURE(install("beta", R"({"name": "beta", "v": "1", "data_dirs": ["/etc"]})"));
  ASSERT_NO_FATAL_FAILURE(install("alpha", R"({"name": "alpha", "v": "1", "data_dirs": [
      {"path": "/home", "uid": 1000, "gid": 1000}, {"path": "/home/x/etc", "uid": 1000, "gid": 1000}]})"));
  write_file(storage() + "/apps/beta/etc/secret.txt", "beta's");
  expect_refused_after_restart(view("alpha", "data/home"), view("alpha", "data/home%2Fx%2Fetc"), "../../beta",
                               storage() + "/apps/beta/etc", 1000);
}

// Removal runs out of the request's way and in constant stack: a purge of a tree deeper than
// recursion could follow (the daemon used to crash at 19,800 levels) while another app works.
TEST_F(RestartTrust, PurgingATreeDeeperThanTheStackKeepsTheDaemonServing) {
  constexpr int kDepth = 25000;
  ASSERT_NO_FATAL_FAILURE(start());
  ASSERT_NO_FATAL_FAILURE(install("deep", R"({"name": "deep", "v": "1", "data_dirs": ["/data"]})"));
  ASSERT_NO_FATAL_FAILURE(install("other", R"({"name": "other", "v": "1", "data_dirs": ["/data"]})"));
  write_file(view("other", "data/data/f.txt"), "other's");
  {
    common::UniqueFd cur(::open((storage() + "/apps/deep/data").c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    for (int i = 0; i < kDepth; ++i) {
      ASSERT_EQ(::mkdirat(cur.get(), "d", 0755), 0);
      cur.reset(::openat(cur.get(), "d", O_PATH | O_DIRECTORY | O_CLOEXEC));
      ASSERT_TRUE(cur);
    }
  }
  auto r = ctl({"app", "remove", "deep", "--purge"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_FALSE(fs::exists(storage() + "/apps/deep"));
  // While the trash is emptied, the other app and the control socket keep answering.
  EXPECT_EQ(read_file(view("other", "data/data/f.txt")), "other's");
  EXPECT_EQ(ctl({"app", "list"}).code, 0);
  EXPECT_TRUE(wait_until([&] { return fs::is_empty(storage() + "/trash"); }, 120s));
  EXPECT_FALSE(daemon_->exited());
  EXPECT_EQ(read_file(view("other", "data/data/f.txt")), "other's");
}

// kill -9 while a prune's tree is being deleted: the next start finishes it, and a later
// version that asks for the directory again gets a new, empty one.
TEST_F(RestartTrust, AKillDuringAPruneIsFinishedAtTheNextStart) {
  ASSERT_NO_FATAL_FAILURE(start());
  ASSERT_NO_FATAL_FAILURE(install("big", R"({"name": "big", "v": "1", "data_dirs": ["/data", "/cache"]})"));
  for (int d = 0; d < 40; ++d) {
    const std::string dir = storage() + "/apps/big/cache/" + std::to_string(d);
    fs::create_directories(dir);
    for (int i = 0; i < 1000; ++i) {
      common::UniqueFd fd(::open((dir + "/" + std::to_string(i)).c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
    }
  }
  write_file(dir_ / "big2.json", R"({"name": "big", "v": "2", "data_dirs": ["/data"]})");
  auto r = ctl({"app", "upgrade", dir_ / "big2.json", "--prune"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(daemon_->stop(SIGKILL), 128 + SIGKILL);
  EXPECT_FALSE(fs::exists(storage() + "/apps/big/cache"));
  ASSERT_NO_FATAL_FAILURE(start());
  EXPECT_TRUE(wait_until([&] { return fs::is_empty(storage() + "/trash"); }, 60s));
  write_file(dir_ / "big3.json", R"({"name": "big", "v": "3", "data_dirs": ["/data", "/cache"]})");
  r = ctl({"app", "upgrade", dir_ / "big3.json"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(storage() + "/apps/big/cache")) names.push_back(e.path().filename());
  EXPECT_EQ(names, std::vector<std::string>{".portalfs-version"});
}

// The state on the same full disk as the app's data (tmpfs here): revoke --force and remove
// still cut the app off at once, and the state is saved once there is room again.
TEST_F(RestartTrust, AFullDiskDoesNotKeepTheAdminFromCuttingAnAppOff) {
  const std::string disk = dir_ / "disk";
  fs::create_directories(disk);
  ASSERT_EQ(::mount("tmpfs", disk.c_str(), "tmpfs", 0, "size=4m"), 0);
  struct Unmount {
    std::string path;
    ~Unmount() { ::umount2(path.c_str(), MNT_DETACH); }
  } unmount{disk};
  auto argv = daemon_argv();
  for (std::size_t i = 0; i + 1 < argv.size(); ++i) {
    if (argv[i] == "--storage-root") argv[i + 1] = disk + "/storage";
    if (argv[i] == "--state-dir") argv[i + 1] = disk + "/state";
  }
  daemon_ = std::make_unique<Child>(argv, dir_ / "daemon.log");
  ASSERT_TRUE(wait_until([&] { return ctl({"status"}).code == 0; }, 10s)) << read_file(dir_ / "daemon.log");
  ASSERT_NO_FATAL_FAILURE(install("hog", R"({"name": "hog", "v": "1", "data_dirs": ["/data"],
      "shared_dirs": [{"name": "own_media", "path": "/media", "access": "read-write"}]})"));
  {
    common::UniqueFd fill(::open(view("hog", "data/data/fill").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
    const std::string block(65536, 'x');
    while (::write(fill.get(), block.data(), block.size()) > 0) {
    }
    ASSERT_EQ(errno, ENOSPC);
  }
  // A journal record is small, and fits in the room left in the journal's last page: changes
  // are still saved until that is used up. Use it up with grants (a grant that can't be saved
  // is refused, code 1, and changes nothing).
  bool full = false;
  for (int i = 0; i < 64 && !full; ++i) {
    auto g = ctl({"grant", "hog", "own_documents", "read", "--path", "/docs" + std::to_string(i)});
    full = g.code == 1;
    if (!full) {
      ASSERT_EQ(g.code, 0) << g.err;
    }
  }
  ASSERT_TRUE(full) << "the state disk never filled up";
  auto r = ctl({"revoke", "hog", "own_media", "--force"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("the change is in force"));
  errno = 0;
  EXPECT_EQ(::open(view("hog", "shared/own_media").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC), -1);
  EXPECT_EQ(errno, ENOENT);
  EXPECT_THAT(ctl({"status"}).out, HasSubstr("state: NOT SAVED"));
  r = ctl({"app", "remove", "hog"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_FALSE(fs::exists(view("hog", "data/data")));
  // Room again: saved within the worker's retry.
  fs::remove(disk + "/storage/apps/hog/data/fill");
  // The retry writes the state whole (the journal can't be trusted after a failed save).
  EXPECT_TRUE(wait_until([&] { return state_files(disk + "/state").find("\"hog\"") == std::string::npos; }, 10s));
  EXPECT_THAT(ctl({"status"}).out, Not(HasSubstr("NOT SAVED")));
  ASSERT_EQ(daemon_->stop(SIGTERM), 0);
}

// What an app writes into its version marker is validated: escape sequences never reach the
// admin's terminal, and invalid UTF-8 does not make a reinstall fail.
TEST_F(RestartTrust, AMarkerTheAppWroteIsNotTrusted) {
  ASSERT_NO_FATAL_FAILURE(start());
  const std::string manifest = R"({"name": "alpha", "v": "1", "data_dirs": ["/data"]})";
  for (const std::string& marker : {std::string("\x1b[2J\x1b]0;owned\x07\n"), std::string("\xff\xfe\n")}) {
    ASSERT_NO_FATAL_FAILURE(install("alpha", manifest));
    const std::string file = view("alpha", "data/data/.portalfs-version");
    ASSERT_EQ(::unlink(file.c_str()), 0);  // the app owns the directory: it may
    write_file(file, marker);
    ASSERT_EQ(ctl({"app", "remove", "alpha"}).code, 0);
    ASSERT_NO_FATAL_FAILURE(install("alpha", manifest));
    auto show = ctl({"app", "show", "alpha"});
    EXPECT_EQ(show.code, 0) << show.err;
    EXPECT_EQ(show.out.find('\x1b'), std::string::npos) << show.out;
    EXPECT_EQ(show.out.find('\xff'), std::string::npos) << show.out;
    EXPECT_THAT(show.out, HasSubstr("data_dir: data (created by 1)"));
    EXPECT_EQ(read_file(storage() + "/apps/alpha/data/.portalfs-version"), "1\n");
    EXPECT_THAT(read_file(dir_ / "daemon.log"), HasSubstr("apps/alpha/data/.portalfs-version: not a version"));
    ASSERT_EQ(ctl({"app", "remove", "alpha", "--purge"}).code, 0);
  }
}

}  // namespace
}  // namespace portalfs::testutil
