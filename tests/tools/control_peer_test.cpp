// SPDX-License-Identifier: MIT
// The control server's peer credential check: a forked child drops to uid 65534 and talks to
// the server; it is refused unless its primary or a supplementary group is the admin group.
// Needs root (setuid, setgroups, chown of the socket).

#include <fcntl.h>
#include <gmock/gmock.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "common/unique_fd.hpp"
#include "mountmgr/control_protocol.hpp"
#include "mountmgr/control_server.hpp"
#include "tests/testutil/temp_dir.hpp"

namespace portalfs::mountmgr {
namespace {

using ::testing::StartsWith;

constexpr uid_t kNobody = 65534;
constexpr gid_t kNogroup = 65534;
constexpr gid_t kExtraGroup = 4242;

/// Forks a child that becomes uid 65534 (primary gid 65534, supplementary `extra_group` if
/// nonzero), sends one request to `socket_path` and returns the response line it got.
/// The child uses only syscalls (the server's threads are running while we fork).
std::string request_as_nobody(const std::string& socket_path, gid_t extra_group) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket_path.c_str(), sizeof(addr.sun_path) - 1);
  const char request[] = "{\"verb\":\"status\"}\n";
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return "pipe failed";
  common::UniqueFd read_end(pipe_fds[0]);
  common::UniqueFd write_end(pipe_fds[1]);

  pid_t child = ::fork();
  if (child == 0) {
    gid_t groups[1] = {extra_group};
    if (::setgroups(extra_group ? 1 : 0, groups) != 0 || ::setgid(kNogroup) != 0 ||
        ::setuid(kNobody) != 0) {
      ::_exit(10);
    }
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
      const char msg[] = "connect failed\n";
      (void)!::write(write_end.get(), msg, sizeof(msg) - 1);
      ::_exit(11);
    }
    (void)!::send(fd, request, sizeof(request) - 1, MSG_NOSIGNAL);
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof(buf))) > 0)
      (void)!::write(write_end.get(), buf, static_cast<size_t>(n));
    ::_exit(0);
  }
  write_end.reset();
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(read_end.get(), buf, sizeof(buf))) > 0)
    out.append(buf, static_cast<size_t>(n));
  int status = 0;
  ::waitpid(child, &status, 0);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 10) return "could not drop privileges";
  auto nl = out.find('\n');
  return nl == std::string::npos ? out : out.substr(0, nl);
}

class ControlPeerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to setuid() a peer";
    // uid 65534 must be able to reach the socket through the temp dir.
    ASSERT_EQ(::chmod(dir_.path().c_str(), 0755), 0);
  }
  static nlohmann::json handler(const nlohmann::json&) { return ok_response("hello\n"); }

  testutil::TempDir dir_{"portalfs-peer"};
  std::string path_ = dir_ / "ctl.sock";
};

TEST_F(ControlPeerTest, UnprivilegedPeerRefusedWithoutAdminGroup) {
  ControlServer server(path_, std::nullopt, handler);
  server.start();
  // Open the socket file up so the credential check, not the file mode, is what refuses.
  ASSERT_EQ(::chmod(path_.c_str(), 0666), 0);
  auto line = request_as_nobody(path_, 0);
  auto response = nlohmann::json::parse(line);
  EXPECT_EQ(response["ok"], false);
  EXPECT_EQ(response["code"], 1);
  EXPECT_THAT(response["error"].get<std::string>(), StartsWith("permission denied: uid 65534"));
}

TEST_F(ControlPeerTest, UnprivilegedPeerRefusedOutsideTheAdminGroup) {
  ControlServer server(path_, gid_t{kExtraGroup + 1}, handler);
  server.start();
  ASSERT_EQ(::chmod(path_.c_str(), 0666), 0);
  auto response = nlohmann::json::parse(request_as_nobody(path_, kExtraGroup));
  EXPECT_EQ(response["ok"], false);
  EXPECT_EQ(response["error"],
            "permission denied: uid 65534 is neither root nor a member of group 4243 (portalfsd "
            "--admin-group)");
}

TEST_F(ControlPeerTest, PrimaryGroupMatchingTheAdminGroupAllowed) {
  ControlServer server(path_, kNogroup, handler);
  server.start();  // socket 0660, group 65534: the child may connect through the file mode too
  auto response = nlohmann::json::parse(request_as_nobody(path_, 0));
  EXPECT_EQ(response, ok_response("hello\n"));
}

TEST_F(ControlPeerTest, SupplementaryGroupMatchingTheAdminGroupAllowed) {
  ControlServer server(path_, kExtraGroup, handler);
  server.start();
  auto response = nlohmann::json::parse(request_as_nobody(path_, kExtraGroup));
  EXPECT_EQ(response, ok_response("hello\n"));
}

TEST_F(ControlPeerTest, SocketModeKeepsOthersOut) {
  ControlServer server(path_, std::nullopt, handler);
  server.start();  // 0600 root: the file mode alone refuses the connect
  EXPECT_EQ(request_as_nobody(path_, 0), "connect failed");
}

}  // namespace
}  // namespace portalfs::mountmgr
