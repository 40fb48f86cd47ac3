// SPDX-License-Identifier: MIT
#include "mountmgr/control_server.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "common/dirs.hpp"
#include "common/log.hpp"
#include "mountmgr/control_protocol.hpp"

namespace portalfs::mountmgr {
namespace {

using common::LogLevel;
using common::UniqueFd;
using Clock = std::chrono::steady_clock;

/// How long writing a response may stall before the client is given up on.
constexpr std::chrono::milliseconds kWriteTimeout{10000};

std::string errno_text(int err) {
  return std::strerror(err);
}

std::runtime_error start_error(const std::string& path, const std::string& what) {
  return std::runtime_error("control socket " + path + ": " + what);
}

bool fill_address(const std::string& path, sockaddr_un& addr) {
  addr = {};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) return false;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return true;
}

/// mkdir -p for the socket's directory. Directories we create are root's alone (0700), or also
/// the admin group's (0750) so that its members reach the socket; existing ones are kept.
void make_parent_dirs(const std::string& socket_path, std::optional<gid_t> admin_group) {
  auto slash = socket_path.rfind('/');
  if (slash == std::string::npos || slash == 0) return;
  const std::string err = common::make_dirs(socket_path.substr(0, slash), admin_group ? 0750 : 0700,
                                            admin_group.value_or(static_cast<gid_t>(-1)));
  if (!err.empty()) throw start_error(socket_path, err);
}

enum class Wait { ready, timed_out, stopped };

/// Waits until `fd` is ready for `events`, the stop eventfd fires, or `deadline` passes.
Wait wait_for(int fd, short events, int stop_fd, Clock::time_point deadline) {
  for (;;) {
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return Wait::timed_out;
    pollfd fds[2] = {{fd, events, 0}, {stop_fd, POLLIN, 0}};
    int n = ::poll(fds, 2, static_cast<int>(std::min<long long>(left.count(), 60000)));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Wait::stopped;
    }
    if (fds[1].revents) return Wait::stopped;
    if (fds[0].revents) return Wait::ready;
  }
}

/// Writes the whole response line (best effort: a client that went away is not an error
/// worth more than a debug line).
void send_response(int fd, int stop_fd, const nlohmann::json& response) {
  // error_handler_t::replace: an output string with invalid UTF-8 (a file name, say) must
  // still produce a response instead of an exception.
  std::string line = response.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  line += '\n';
  std::size_t sent = 0;
  auto deadline = Clock::now() + kWriteTimeout;
  while (sent < line.size()) {
    ssize_t n = ::send(fd, line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
      deadline = Clock::now() + kWriteTimeout;  // the timeout is for a stall, not the total
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (wait_for(fd, POLLOUT, stop_fd, deadline) == Wait::ready) continue;
      common::log(LogLevel::debug, "control: client too slow to take its response; dropped");
      return;
    }
    common::log(LogLevel::debug, "control: client went away before its response: " +
                                     errno_text(n < 0 ? errno : EPIPE));
    return;
  }
}

/// Supplementary groups of the peer: SO_PEERGROUPS (taken at connect time, so a pid reused
/// since cannot lie to us), else the Groups: line of /proc/PID/status.
std::vector<gid_t> peer_groups(int fd, pid_t pid) {
  std::vector<gid_t> groups(64);
  for (int attempt = 0; attempt < 4; ++attempt) {
    socklen_t len = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &len) == 0) {
      groups.resize(len / sizeof(gid_t));
      return groups;
    }
    if (errno != ERANGE) break;
    groups.resize(len / sizeof(gid_t) + 1);
  }
  groups.clear();
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Groups:", 0) != 0) continue;
    std::istringstream in(line.substr(7));
    unsigned long gid = 0;
    while (in >> gid) groups.push_back(static_cast<gid_t>(gid));
    break;
  }
  return groups;
}

}  // namespace

ControlServer::ControlServer(std::string socket_path, std::optional<gid_t> admin_group,
                             Handler handler)
    : socket_path_(std::move(socket_path)),
      admin_group_(admin_group),
      handler_(std::move(handler)) {}

ControlServer::~ControlServer() {
  stop();
}

void ControlServer::start() {
  std::lock_guard lock(lifecycle_mutex_);
  if (listen_fd_) throw std::logic_error("ControlServer::start() called twice");
  const std::string& path = socket_path_;
  sockaddr_un addr{};
  if (!fill_address(path, addr)) {
    throw start_error(path, "path empty or too long for a Unix socket (the limit is " +
                                std::to_string(sizeof(addr.sun_path) - 1) + " bytes)");
  }
  make_parent_dirs(path, admin_group_);

  // A socket file left by a daemon that died is removed; one a live daemon answers on is not.
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      throw start_error(path, "exists and is not a socket; remove it or choose another --socket");
    }
    UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!probe) throw start_error(path, "socket: " + errno_text(errno));
    if (::connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0) {
      throw start_error(path, "another portalfsd is already listening on it");
    }
    if (errno != ECONNREFUSED) {
      throw start_error(path, "cannot check whether another daemon listens: " + errno_text(errno));
    }
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      throw start_error(path, "cannot remove the stale socket: " + errno_text(errno));
    }
    common::log(LogLevel::info, "control: removed the stale socket " + path);
  } else if (errno != ENOENT) {
    throw start_error(path, errno_text(errno));
  }

  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) throw start_error(path, "socket: " + errno_text(errno));
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    if (errno == EADDRINUSE)
      throw start_error(path, "another portalfsd is already listening on it");
    throw start_error(path, "bind: " + errno_text(errno));
  }
  // Owner and mode are set before listen(): until then a connect is refused, so no one can
  // slip in through the umask's mode.
  auto fail_bound = [&](const std::string& what) {
    ::unlink(path.c_str());
    return start_error(path, what + ": " + errno_text(errno));
  };
  if (admin_group_) {
    if (::chown(path.c_str(), static_cast<uid_t>(-1), *admin_group_) != 0)
      throw fail_bound("chown");
    if (::chmod(path.c_str(), 0660) != 0) throw fail_bound("chmod");
  } else if (::chmod(path.c_str(), 0600) != 0) {
    throw fail_bound("chmod");
  }
  if (::lstat(path.c_str(), &st) != 0) throw fail_bound("stat");
  if (::listen(fd.get(), 64) != 0) throw fail_bound("listen");

  UniqueFd stop(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!stop) throw fail_bound("eventfd");

  socket_dev_ = st.st_dev;
  socket_ino_ = st.st_ino;
  listen_fd_ = std::move(fd);
  stop_fd_ = std::move(stop);
  accept_thread_ = std::jthread([this] { accept_loop(); });
  common::log(LogLevel::info, "control: listening on " + path);
}

void ControlServer::stop() {
  std::lock_guard lock(lifecycle_mutex_);
  if (!listen_fd_) return;
  uint64_t one = 1;
  if (::write(stop_fd_.get(), &one, sizeof(one)) < 0) {
    common::log(LogLevel::error, "control: cannot signal stop: " + errno_text(errno));
  }
  if (accept_thread_.joinable()) accept_thread_.join();
  reap_connections(true);
  listen_fd_.reset();
  stop_fd_.reset();

  // Only our own socket file: if someone replaced it since, it is theirs.
  struct stat st {};
  if (::lstat(socket_path_.c_str(), &st) == 0 && st.st_dev == socket_dev_ &&
      st.st_ino == socket_ino_) {
    ::unlink(socket_path_.c_str());
  }
}

void ControlServer::reap_connections(bool all) {
  for (auto it = connections_.begin(); it != connections_.end();) {
    if (all || it->done.load()) {
      if (it->thread.joinable()) it->thread.join();
      it = connections_.erase(it);
    } else {
      ++it;
    }
  }
}

void ControlServer::accept_loop() {
  for (;;) {
    pollfd fds[2] = {{listen_fd_.get(), POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}};
    int n = ::poll(fds, 2, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      common::log(LogLevel::error, "control: poll: " + errno_text(errno));
      return;
    }
    if (fds[1].revents) return;
    reap_connections(false);
    if (!(fds[0].revents & POLLIN)) continue;

    UniqueFd client(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!client) {
      int err = errno;
      if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR || err == ECONNABORTED) continue;
      common::log_once(LogLevel::error, "control-accept-" + std::to_string(err),
                       "control: accept: " + errno_text(err));
      // Out of fds (EMFILE/ENFILE) leaves the connection pending and poll() readable; back off
      // instead of spinning, but keep watching the stop eventfd.
      pollfd stop_only{stop_fd_.get(), POLLIN, 0};
      if (::poll(&stop_only, 1, 100) > 0) return;
      continue;
    }
    if (connections_.size() >= kMaxConnections) {
      send_response(client.get(), stop_fd_.get(),
                    error_response(1, "portalfsd is busy (too many requests at once); try again"));
      continue;
    }
    auto& conn = connections_.emplace_back();
    conn.thread = std::jthread([this, &conn, fd = std::move(client)]() mutable {
      serve(std::move(fd));
      conn.done.store(true);
    });
  }
}

void ControlServer::check_peer(int fd) const {
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    throw std::runtime_error("cannot read the peer's credentials: " + errno_text(errno));
  }
  // Root, and the daemon's own user (a rootless portalfsd: README "Rootless").
  if (cred.uid == 0 || cred.uid == ::geteuid()) return;
  if (admin_group_) {
    if (cred.gid == *admin_group_) return;
    for (gid_t g : peer_groups(fd, cred.pid)) {
      if (g == *admin_group_) return;
    }
    throw std::runtime_error("uid " + std::to_string(cred.uid) + " is neither root nor a member of group " +
                             std::to_string(*admin_group_) + " (portalfsd --admin-group)");
  }
  throw std::runtime_error("uid " + std::to_string(cred.uid) +
                           " is not root (start portalfsd with --admin-group to let a group in)");
}

std::optional<std::string> ControlServer::read_request_line(int fd, int stop_fd) const {
  // Up to kMaxRequestBytes, within read_timeout_.
  std::string buf;
  std::size_t newline = std::string::npos;
  auto deadline = Clock::now() + read_timeout_;
  char chunk[65536];
  for (;;) {
    ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
    if (n > 0) {
      std::size_t scanned = buf.size();
      buf.append(chunk, static_cast<std::size_t>(n));
      newline = buf.find('\n', scanned);
      if (newline != std::string::npos && newline <= kMaxRequestBytes) break;
      if (buf.size() > kMaxRequestBytes) {
        send_response(fd, stop_fd,
                      error_response(2, "request too large (the limit is " +
                                            std::to_string(kMaxRequestBytes) + " bytes)"));
        return std::nullopt;
      }
      continue;
    }
    if (n == 0) {
      // A client that sent its request without the newline and shut down its side is served
      // all the same; one that sent nothing (another daemon probing the socket) is not.
      if (buf.empty()) return std::nullopt;
      newline = buf.size();
      break;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return std::nullopt;
    switch (wait_for(fd, POLLIN, stop_fd, deadline)) {
      case Wait::ready:
        continue;
      case Wait::stopped:
        return std::nullopt;
      case Wait::timed_out:
        send_response(fd, stop_fd,
                      error_response(2, "no complete request line within " +
                                            std::to_string(read_timeout_.count()) + " ms"));
        return std::nullopt;
    }
  }
  buf.resize(newline);
  if (!buf.empty() && buf.back() == '\r') buf.pop_back();
  return buf;
}

void ControlServer::serve(UniqueFd client) {
  const int fd = client.get();
  const int stop_fd = stop_fd_.get();

  try {
    check_peer(fd);
  } catch (const std::runtime_error& e) {
    common::log(LogLevel::info, std::string("control: refused a connection: ") + e.what());
    send_response(fd, stop_fd, error_response(1, std::string("permission denied: ") + e.what()));
    return;
  }
  const std::optional<std::string> line = read_request_line(fd, stop_fd);
  if (!line) return;

  nlohmann::json request;
  try {
    request = nlohmann::json::parse(*line);
  } catch (const nlohmann::json::exception& e) {
    send_response(fd, stop_fd, error_response(2, std::string("malformed request: ") + e.what()));
    return;
  }
  if (!request.is_object()) {
    send_response(fd, stop_fd, error_response(2, "malformed request: expected a JSON object"));
    return;
  }

  nlohmann::json response;
  try {
    response = handler_(request);
  } catch (const std::exception& e) {
    common::log(LogLevel::error, std::string("control: request handler failed: ") + e.what());
    response = error_response(1, std::string("internal error: ") + e.what());
  } catch (...) {
    response = error_response(1, "internal error");
  }
  send_response(fd, stop_fd, response);
}

}  // namespace portalfs::mountmgr
