// SPDX-License-Identifier: MIT
#include "tests/testutil/container_user.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <utility>
#include <vector>

namespace portalfs::testutil {
namespace {

// The entries of a directory but . and .. (empty when it can't be read).
std::vector<std::string> entries(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return out;
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name != "." && name != "..") out.push_back(name);
  }
  ::closedir(d);
  return out;
}

// Every view root's path: <mountpoint>/apps/<app>/<kind>/<view>.
std::vector<std::string> view_paths(const std::string& mountpoint) {
  std::vector<std::string> out;
  for (const auto& app : entries(mountpoint + "/apps")) {
    const std::string app_dir = mountpoint + "/apps/" + app;
    for (const auto& kind : entries(app_dir)) {
      for (const auto& view : entries(app_dir + "/" + kind)) out.push_back(app_dir + "/" + kind + "/" + view);
    }
  }
  return out;
}

bool make_dirs(const std::string& path) {
  for (std::size_t pos = path.find('/', 1);; pos = path.find('/', pos + 1)) {
    if (::mkdir(path.substr(0, pos).c_str(), 0755) != 0 && errno != EEXIST) return false;
    if (pos == std::string::npos) return true;
  }
}

// In the child, still root: the views cloned, a tmpfs over the mount, the clones put back at
// their paths. Returns 0 or the exit code saying which step failed.
int bind_views(const std::string& mountpoint) {
  if (::unshare(CLONE_NEWNS) != 0) return 240;
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return 241;
  std::vector<std::pair<std::string, int>> trees;
  for (const auto& path : view_paths(mountpoint)) {
    // A view that is not served (EIO) is not there for a container either.
    const int tree = static_cast<int>(::open_tree(AT_FDCWD, path.c_str(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC));
    if (tree >= 0) trees.emplace_back(path, tree);
  }
  if (::mount("tmpfs", mountpoint.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") != 0) return 242;
  for (const auto& [path, tree] : trees) {
    if (!make_dirs(path)) return 243;
    if (::move_mount(tree, "", AT_FDCWD, path.c_str(), MOVE_MOUNT_F_EMPTY_PATH) != 0) return 244;
    ::close(tree);
  }
  return 0;
}

}  // namespace

int as_container_user(const std::string& mountpoint, uid_t uid, gid_t gid, const std::function<int()>& fn) {
  const pid_t pid = ::fork();
  if (pid < 0) return 249;
  if (pid == 0) {
    // A crash here must not run the parent's handlers (they would unmount the parent's mounts).
    for (int sig : {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL}) ::signal(sig, SIG_DFL);
    ::alarm(20);
    if (const int rc = bind_views(mountpoint); rc != 0) ::_exit(rc);
    if (::setgroups(0, nullptr) != 0 || ::setresgid(gid, gid, gid) != 0 || ::setresuid(uid, uid, uid) != 0) {
      ::_exit(245);
    }
    ::_exit(fn());
  }
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return 249;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace portalfs::testutil
