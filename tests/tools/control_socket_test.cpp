// SPDX-License-Identifier: MIT
// ControlServer and ControlClient over a real Unix socket in a temp dir, with a fake handler.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "common/unique_fd.hpp"
#include "mountmgr/control_client.hpp"
#include "mountmgr/control_protocol.hpp"
#include "mountmgr/control_server.hpp"
#include "tests/testutil/temp_dir.hpp"

namespace portalfs::mountmgr {
namespace {

using common::UniqueFd;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using namespace std::chrono_literals;

/// Answers {"ok": true, "output": <the request, dumped>}.
nlohmann::json echo(const nlohmann::json& request) {
  return ok_response(request.dump());
}

UniqueFd connect_raw(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) return {};
  return fd;
}

void send_all(int fd, const std::string& data) {
  std::size_t sent = 0;
  while (sent < data.size()) {
    ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return;  // the server may close early: what it answered is still readable
    sent += static_cast<std::size_t>(n);
  }
}

/// One line from `fd` (without the newline), or "" after EOF / 5 s.
std::string read_line(int fd) {
  std::string buf;
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (buf.find('\n') == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char chunk[4096];
    ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
    if (n <= 0) break;
    buf.append(chunk, static_cast<std::size_t>(n));
  }
  auto nl = buf.find('\n');
  return nl == std::string::npos ? "" : buf.substr(0, nl);
}

class ControlSocketTest : public ::testing::Test {
 protected:
  testutil::TempDir dir_{"portalfs-ctl"};
  std::string path_ = dir_ / "ctl.sock";
};

TEST_F(ControlSocketTest, RoundTrip) {
  ControlServer server(path_, std::nullopt, echo);
  server.start();
  nlohmann::json request = {{"verb", "status"}, {"format", "json"}, {"args", {{"x", 1}}}};
  auto response = ControlClient().call(path_, request);
  EXPECT_EQ(response["ok"], true);
  EXPECT_EQ(nlohmann::json::parse(response["output"].get<std::string>()), request);
}

TEST_F(ControlSocketTest, ErrorResponsesPassThrough) {
  ControlServer server(path_, std::nullopt,
                       [](const nlohmann::json&) { return error_response(2, "no app \"web\""); });
  server.start();
  auto response = ControlClient().call(path_, {{"verb", "app.show"}});
  EXPECT_EQ(response, (nlohmann::json{{"ok", false}, {"code", 2}, {"error", "no app \"web\""}}));
}

TEST_F(ControlSocketTest, SocketModeAndParentDirs) {
  std::string nested = dir_ / "run/portalfs/ctl.sock";
  ControlServer server(nested, std::nullopt, echo);
  server.start();
  struct stat st {};
  ASSERT_EQ(::lstat(nested.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  // Root's alone (#15): the admin group's when there is one (HostHardening tests it).
  ASSERT_EQ(::stat((dir_ / "run").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  ASSERT_EQ(::stat((dir_ / "run/portalfs").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
}

TEST_F(ControlSocketTest, AdminGroupSocketMode) {
  if (::geteuid() != 0) GTEST_SKIP() << "chown to another group needs root";
  ControlServer server(path_, gid_t{65534}, echo);
  server.start();
  struct stat st {};
  ASSERT_EQ(::lstat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0660u);
  EXPECT_EQ(st.st_gid, 65534u);
}

TEST_F(ControlSocketTest, MalformedRequestIsCode2) {
  ControlServer server(path_, std::nullopt, echo);
  server.start();
  for (const char* bad : {"not json\n", "{\"verb\": \n", "[1, 2]\n", "\"status\"\n"}) {
    UniqueFd fd = connect_raw(path_);
    ASSERT_TRUE(fd);
    send_all(fd.get(), bad);
    auto response = nlohmann::json::parse(read_line(fd.get()));
    EXPECT_EQ(response["ok"], false) << bad;
    EXPECT_EQ(response["code"], 2) << bad;
    EXPECT_THAT(response["error"].get<std::string>(), StartsWith("malformed request: ")) << bad;
  }
}

TEST_F(ControlSocketTest, RequestWithoutNewlineBeforeShutdownIsServed) {
  ControlServer server(path_, std::nullopt, echo);
  server.start();
  UniqueFd fd = connect_raw(path_);
  ASSERT_TRUE(fd);
  send_all(fd.get(), R"({"verb":"status"})");
  ::shutdown(fd.get(), SHUT_WR);
  auto response = nlohmann::json::parse(read_line(fd.get()));
  EXPECT_EQ(response["ok"], true);
}

TEST_F(ControlSocketTest, OversizeRequestRefused) {
  std::atomic<int> calls{0};
  ControlServer server(path_, std::nullopt, [&](const nlohmann::json& r) {
    ++calls;
    return echo(r);
  });
  server.start();

  UniqueFd fd = connect_raw(path_);
  ASSERT_TRUE(fd);
  send_all(fd.get(), std::string(kMaxRequestBytes + 10, 'x'));
  auto response = nlohmann::json::parse(read_line(fd.get()));
  EXPECT_EQ(response["code"], 2);
  EXPECT_EQ(response["error"], "request too large (the limit is 1048576 bytes)");

  // The same through the client: a manifest far too big.
  nlohmann::json big = {{"verb", "app.install"},
                        {"args", {{"manifest", std::string(2 * kMaxRequestBytes, 'a')}}}};
  auto via_client = ControlClient().call(path_, big);
  EXPECT_EQ(via_client["ok"], false);
  EXPECT_EQ(via_client["code"], 2);
  EXPECT_EQ(calls.load(), 0);
}

TEST_F(ControlSocketTest, SilentClientTimesOut) {
  ControlServer server(path_, std::nullopt, echo);
  server.set_read_timeout(200ms);
  server.start();
  UniqueFd fd = connect_raw(path_);
  ASSERT_TRUE(fd);
  send_all(fd.get(), "{\"verb\":");  // never finished
  auto response = nlohmann::json::parse(read_line(fd.get()));
  EXPECT_EQ(response["code"], 2);
  EXPECT_EQ(response["error"], "no complete request line within 200 ms");
}

TEST_F(ControlSocketTest, HandlerExceptionIsCode1) {
  ControlServer server(path_, std::nullopt, [](const nlohmann::json&) -> nlohmann::json {
    throw std::runtime_error("boom");
  });
  server.start();
  auto response = ControlClient().call(path_, {{"verb", "status"}});
  EXPECT_EQ(response,
            (nlohmann::json{{"ok", false}, {"code", 1}, {"error", "internal error: boom"}}));
}

TEST_F(ControlSocketTest, InvalidUtf8OutputStillAnswers) {
  ControlServer server(path_, std::nullopt,
                       [](const nlohmann::json&) { return ok_response("bad \xff name\n"); });
  server.start();
  auto response = ControlClient().call(path_, {{"verb", "status"}});
  EXPECT_EQ(response["ok"], true);
  EXPECT_THAT(response["output"].get<std::string>(), StartsWith("bad "));
}

TEST_F(ControlSocketTest, StopIsPromptWithIdleClientsAndRemovesTheSocket) {
  ControlServer server(path_, std::nullopt, echo);
  server.set_read_timeout(60s);
  server.start();
  UniqueFd idle1 = connect_raw(path_);
  UniqueFd idle2 = connect_raw(path_);
  ASSERT_TRUE(idle1);
  ASSERT_TRUE(idle2);
  send_all(idle2.get(), "{\"partial\":");
  std::this_thread::sleep_for(50ms);  // let the server pick them up
  auto before = std::chrono::steady_clock::now();
  server.stop();
  EXPECT_LT(std::chrono::steady_clock::now() - before, 1s);
  struct stat st {};
  EXPECT_NE(::lstat(path_.c_str(), &st), 0);
  server.stop();  // idempotent
}

TEST_F(ControlSocketTest, SlowClientDoesNotBlockOthers) {
  ControlServer server(path_, std::nullopt, echo);
  server.set_read_timeout(30s);
  server.start();
  UniqueFd idle = connect_raw(path_);
  ASSERT_TRUE(idle);
  auto before = std::chrono::steady_clock::now();
  EXPECT_EQ(ControlClient().call(path_, {{"verb", "status"}})["ok"], true);
  EXPECT_LT(std::chrono::steady_clock::now() - before, 2s);
}

TEST_F(ControlSocketTest, ConcurrentClients) {
  ControlServer server(path_, std::nullopt, echo);
  server.start();
  std::atomic<int> good{0};
  {
    std::vector<std::jthread> threads;
    for (int t = 0; t < 8; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < 25; ++i) {
          nlohmann::json req = {{"verb", "status"}, {"args", {{"t", t}, {"i", i}}}};
          auto resp = ControlClient().call(path_, req);
          if (nlohmann::json::parse(resp["output"].get<std::string>()) == req) ++good;
        }
      });
    }
  }
  EXPECT_EQ(good.load(), 200);
}

TEST_F(ControlSocketTest, StaleSocketFileIsReclaimed) {
  {
    // A socket file nothing listens on, as a crashed daemon leaves it.
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof(addr.sun_path) - 1);
    ASSERT_EQ(::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)), 0);
  }
  struct stat st {};
  ASSERT_EQ(::lstat(path_.c_str(), &st), 0);
  ControlServer server(path_, std::nullopt, echo);
  server.start();
  EXPECT_EQ(ControlClient().call(path_, {{"verb", "status"}})["ok"], true);
}

TEST_F(ControlSocketTest, SecondServerOnTheSamePathRefused) {
  ControlServer first(path_, std::nullopt, echo);
  first.start();
  {
    ControlServer second(path_, std::nullopt, echo);
    try {
      second.start();
      ADD_FAILURE() << "second start() succeeded";
    } catch (const std::runtime_error& e) {
      EXPECT_EQ(std::string(e.what()),
                "control socket " + path_ + ": another portalfsd is already listening on it");
    }
  }  // the refused server's destructor must leave the first one's socket alone
  EXPECT_EQ(ControlClient().call(path_, {{"verb", "status"}})["ok"], true);
}

TEST_F(ControlSocketTest, NonSocketFileIsNotRemoved) {
  testutil::write_file(path_, "precious");
  ControlServer server(path_, std::nullopt, echo);
  try {
    server.start();
    ADD_FAILURE() << "start() succeeded over a regular file";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("exists and is not a socket"));
  }
  EXPECT_EQ(testutil::read_file(path_), "precious");
}

TEST_F(ControlSocketTest, TooLongPathRefused) {
  std::string long_path = dir_ / (std::string(120, 'x') + ".sock");
  ControlServer server(long_path, std::nullopt, echo);
  EXPECT_THROW(server.start(), std::runtime_error);
  try {
    (void)ControlClient().call(long_path, {{"verb", "status"}});
    ADD_FAILURE();
  } catch (const ControlError& e) {
    EXPECT_THAT(e.what(), HasSubstr("too long for a Unix socket"));
  }
}

TEST_F(ControlSocketTest, ClientMessageWhenTheDaemonIsNotRunning) {
  try {
    (void)ControlClient().call(path_, {{"verb", "status"}});
    ADD_FAILURE();
  } catch (const ControlError& e) {
    EXPECT_EQ(std::string(e.what()), "cannot reach portalfsd at " + path_ +
                                         ": No such file or directory (is the daemon running? "
                                         "start it with: portalfsd)");
  }
}

TEST_F(ControlSocketTest, ClientMessageForAStaleSocket) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path_.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)), 0);
  try {
    (void)ControlClient().call(path_, {{"verb", "status"}});
    ADD_FAILURE();
  } catch (const ControlError& e) {
    EXPECT_EQ(std::string(e.what()), "cannot reach portalfsd at " + path_ +
                                         ": Connection refused (is the daemon running? start it "
                                         "with: portalfsd)");
  }
}

TEST_F(ControlSocketTest, ClientTimesOutOnASlowHandler) {
  ControlServer server(path_, std::nullopt, [](const nlohmann::json& r) {
    std::this_thread::sleep_for(1500ms);
    return echo(r);
  });
  server.start();
  try {
    (void)ControlClient(300ms).call(path_, {{"verb", "status"}});
    ADD_FAILURE();
  } catch (const ControlError& e) {
    EXPECT_THAT(e.what(), HasSubstr("did not answer within"));
  }
}

TEST_F(ControlSocketTest, ClientRejectsAMalformedResponse) {
  ControlServer server(path_, std::nullopt, [](const nlohmann::json&) {
    return nlohmann::json{{"ok", "yes"}};
  });
  server.start();
  try {
    (void)ControlClient().call(path_, {{"verb", "status"}});
    ADD_FAILURE();
  } catch (const ControlError& e) {
    EXPECT_THAT(e.what(), StartsWith("malformed response from portalfsd at "));
  }
}

// nlohmann quotes what it read of a malformed response, DEL and all: still one printable line.
TEST(ControlErrorTest, EscapesControlCharacters) {
  const ControlError e("malformed response: last read: '\"Tr\x7f'\n");
  EXPECT_STREQ(e.what(), R"(malformed response: last read: '"Tr\x7f'\n)");
}

}  // namespace
}  // namespace portalfs::mountmgr
