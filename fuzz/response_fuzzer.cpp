// SPDX-License-Identifier: MIT
// libFuzzer target: one response line, decoded by portalctl's real ControlClient::call().
//
// call() reads and checks the response inline, on a socket, so the target serves it one: a
// thread accepts each connection on a Unix socket in a temporary directory, reads the request
// line and answers with the fuzz input (whatever bytes it holds, newline or not) before closing.
// call() must then either return a response of the documented shape ({"ok": true, "output":
// string} or {"ok": false, "code": int, "error": string}) or throw ControlError with one line;
// any other exception escapes and libFuzzer reports it.

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include <nlohmann/json.hpp>

#include "fuzz/fuzz_check.hpp"
#include "mountmgr/control_client.hpp"

namespace {

using namespace portalfs;
using fuzz::one_line;
using fuzz::require;
using fuzz::show;
using nlohmann::json;
namespace fs = std::filesystem;

fs::path temp_dir;
std::string socket_path;
int listen_fd = -1;
std::mutex answer_mutex;
std::string answer;  // what the server thread sends back; set before each call()

// Answers every connection with `answer`: read the request line first, so that closing never
// discards unread bytes (which would reset the connection instead of ending it).
void serve_forever() {
  for (;;) {
    const int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR) continue;
      require(false, "accept", std::strerror(errno));
    }
    std::string request;
    char buf[4096];
    while (request.find('\n') == std::string::npos) {
      const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      request.append(buf, static_cast<std::size_t>(n));
    }
    std::string out;
    {
      std::lock_guard lock(answer_mutex);
      out = answer;
    }
    for (std::size_t sent = 0; sent < out.size();) {
      const ssize_t n = ::send(fd, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      sent += static_cast<std::size_t>(n);
    }
    ::close(fd);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  std::string tmpl = (fs::temp_directory_path() / "portalfs-fuzz-response-XXXXXX").string();
  require(::mkdtemp(tmpl.data()) != nullptr, "mkdtemp", tmpl);
  temp_dir = tmpl;
  socket_path = (temp_dir / "sock").string();
  listen_fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  require(socket_path.size() < sizeof(addr.sun_path), "socket path too long", socket_path);
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  require(listen_fd >= 0 && ::bind(listen_fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
              ::listen(listen_fd, 16) == 0,
          "listen", std::strerror(errno));
  std::thread(serve_forever).detach();
  std::atexit([] {
    std::error_code ec;
    fs::remove_all(temp_dir, ec);
  });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  {
    std::lock_guard lock(answer_mutex);
    answer.assign(reinterpret_cast<const char*>(data), size);
  }
  // Long enough that only a hang trips it (libFuzzer's -timeout reports that first).
  const mountmgr::ControlClient client(std::chrono::seconds(60));
  json response;
  try {
    response = client.call(socket_path, {{"verb", "status"}, {"format", "text"}, {"args", json::object()}});
  } catch (const mountmgr::ControlError& e) {
    require(one_line(e.what()), "ControlError is not one line", e.what());
    return 0;
  }
  // call() promises this shape; portalctl relies on it.
  require(response.is_object() && response.contains("ok") && response["ok"].is_boolean(), "no ok", [&] { return show(response); });
  if (response["ok"].get<bool>()) {
    require(response.contains("output") && response["output"].is_string(), "ok without output", [&] { return show(response); });
  } else {
    require(response.contains("code") && response["code"].is_number_integer() && response.contains("error") &&
                response["error"].is_string(),
            "error without code/error", [&] { return show(response); });
  }
  return 0;
}
