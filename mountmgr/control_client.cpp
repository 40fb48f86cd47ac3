// SPDX-License-Identifier: MIT
#include "mountmgr/control_client.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>

#include "common/unique_fd.hpp"

namespace portalfs::mountmgr {
namespace {

using Clock = std::chrono::steady_clock;

/// A connect on a Unix socket waits only when the daemon's backlog is full: a daemon that
/// stopped accepting. Give up on it soon.
constexpr std::chrono::seconds kConnectTimeout{10};

timeval to_timeval(std::chrono::milliseconds ms) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  return tv;
}

std::string unreachable(const std::string& path, int err) {
  std::string msg = "cannot reach portalfsd at " + path + ": " + std::strerror(err);
  if (err == ENOENT || err == ECONNREFUSED) {
    msg += " (is the daemon running? start it with: portalfsd)";
  } else if (err == EACCES || err == EPERM) {
    msg += " (only root and members of portalfsd's --admin-group may use it)";
  } else if (err == EAGAIN || err == ETIMEDOUT) {
    msg += " (the daemon is not accepting connections)";
  }
  return msg;
}

std::string seconds(std::chrono::milliseconds ms) {
  if (ms.count() % 1000 == 0) return std::to_string(ms.count() / 1000) + " s";
  return std::to_string(ms.count()) + " ms";
}

/// A connected socket to the daemon, its send timeout set to `io_timeout`.
common::UniqueFd connect_to(const std::string& socket_path, std::chrono::milliseconds io_timeout) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.empty() || socket_path.size() >= sizeof(addr.sun_path)) {
    throw ControlError("cannot reach portalfsd at " + socket_path +
                       ": path empty or too long for a Unix socket (the limit is " +
                       std::to_string(sizeof(addr.sun_path) - 1) + " bytes)");
  }
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);

  common::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) throw ControlError(unreachable(socket_path, errno));
  // SO_SNDTIMEO bounds connect() on a Unix socket as well as send().
  timeval connect_tv = to_timeval(kConnectTimeout);
  ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &connect_tv, sizeof(connect_tv));
  int rc;
  do {
    rc = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) throw ControlError(unreachable(socket_path, errno));

  timeval io_tv = to_timeval(io_timeout);
  ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &io_tv, sizeof(io_tv));
  return fd;
}

/// Sends the whole line; a daemon that closed the connection may have answered, so that is
/// left for the read to find out.
void send_line(int fd, const std::string& line, const std::string& socket_path, std::chrono::milliseconds timeout) {
  std::size_t sent = 0;
  while (sent < line.size()) {
    ssize_t n = ::send(fd, line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) return;  // it may have answered: read
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      throw ControlError("portalfsd at " + socket_path + " did not take the request within " + seconds(timeout));
    }
    throw ControlError("cannot send the request to portalfsd at " + socket_path + ": " +
                       std::strerror(n < 0 ? errno : EIO));
  }
}

/// The first line the daemon sends (without its newline), within `timeout` and `max_bytes`.
std::string read_line(int fd, const std::string& socket_path, std::chrono::milliseconds timeout,
                      std::size_t max_bytes) {
  std::string buf;
  std::size_t newline = std::string::npos;
  auto deadline = Clock::now() + timeout;
  char chunk[65536];
  while (newline == std::string::npos) {
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    pollfd pfd{fd, POLLIN, 0};
    int ready = left.count() > 0 ? ::poll(&pfd, 1, static_cast<int>(left.count())) : 0;
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0) {
      throw ControlError("portalfsd at " + socket_path + " did not answer within " + seconds(timeout));
    }
    ssize_t n = ready < 0 ? -1 : ::recv(fd, chunk, sizeof(chunk), 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0 && errno != ECONNRESET) {
      throw ControlError("cannot read the response of portalfsd at " + socket_path + ": " + std::strerror(errno));
    }
    if (n <= 0) {
      throw ControlError("portalfsd at " + socket_path + " closed the connection without answering");
    }
    std::size_t scanned = buf.size();
    buf.append(chunk, static_cast<std::size_t>(n));
    newline = buf.find('\n', scanned);
    if (newline == std::string::npos && buf.size() > max_bytes) {
      throw ControlError("malformed response from portalfsd at " + socket_path + ": longer than " +
                         std::to_string(max_bytes) + " bytes");
    }
  }
  buf.resize(newline);
  return buf;
}

/// The response line as the protocol's object: {"ok": true, "output"} or {"ok": false, "code", "error"}.
nlohmann::json parse_response(const std::string& line, const std::string& socket_path) {
  nlohmann::json response;
  try {
    response = nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception& e) {
    throw ControlError("malformed response from portalfsd at " + socket_path + ": " + e.what());
  }
  bool well_formed = response.is_object() && response.contains("ok") && response["ok"].is_boolean();
  if (well_formed && response["ok"].get<bool>()) {
    well_formed = response.contains("output") && response["output"].is_string();
  } else if (well_formed) {
    well_formed = response.contains("code") && response["code"].is_number_integer() && response.contains("error") &&
                  response["error"].is_string();
  }
  if (!well_formed) {
    throw ControlError("malformed response from portalfsd at " + socket_path +
                       ": expected {\"ok\": true, \"output\"} or {\"ok\": false, \"code\", \"error\"}");
  }
  return response;
}

}  // namespace

nlohmann::json ControlClient::call(const std::string& socket_path, const nlohmann::json& request) const {
  const common::UniqueFd fd = connect_to(socket_path, timeout_);
  std::string line = request.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  line += '\n';
  send_line(fd.get(), line, socket_path, timeout_);
  return parse_response(read_line(fd.get(), socket_path, timeout_, kMaxResponseBytes), socket_path);
}

}  // namespace portalfs::mountmgr
