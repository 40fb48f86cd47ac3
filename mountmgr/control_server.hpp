// SPDX-License-Identifier: MIT
#pragma once

// The daemon's end of the control protocol (mountmgr/control_protocol.hpp): a Unix stream
// socket; per connection, the peer's credentials are checked (SO_PEERCRED: root, or a member of
// the admin group), then one JSON request line is read, handed to the handler, and one JSON
// response line is written back before the connection is closed.
//
// Each connection gets its own thread (at most kMaxConnections at once), so a slow client never
// holds up the others; every wait polls the stop eventfd as well, so stop() is prompt.

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <list>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>

#include "common/unique_fd.hpp"

namespace portalfs::mountmgr {

class ControlServer {
 public:
  /// Carries out one request object and returns the response object. Called from several
  /// threads at once; must be thread-safe. An exception becomes a code-1 response.
  using Handler = std::function<nlohmann::json(const nlohmann::json&)>;

  /// Connections served at once; a connection beyond that is answered "busy" (code 1) at once,
  /// so a flood of idle clients can't exhaust the daemon's threads.
  static constexpr std::size_t kMaxConnections = 32;

  /// `admin_group`: members (primary or supplementary group) may connect besides root; the
  /// socket is then mode 0660 with that group, else 0600.
  ControlServer(std::string socket_path, std::optional<gid_t> admin_group, Handler handler);
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  /// Binds and starts serving. Creates the socket's parent directory (0755) if missing and
  /// removes a stale socket file that nothing listens on. Throws std::runtime_error with a
  /// one-line message when another daemon listens on the path, the path is not a socket, or a
  /// syscall fails.
  void start();

  /// Stops accepting, waits for the connections in progress (a handler already running is let
  /// finish; a client still sending is cut off), and removes the socket file. Idempotent.
  /// Never call it from the handler: it waits for the handler's own thread.
  void stop();

  [[nodiscard]] const std::string& socket_path() const noexcept { return socket_path_; }

  /// How long a client may take to send its request line (default 5 s). Set before start().
  void set_read_timeout(std::chrono::milliseconds timeout) { read_timeout_ = timeout; }

 private:
  struct Connection {
    std::jthread thread;
    std::atomic<bool> done{false};
  };

  void accept_loop();
  void serve(common::UniqueFd client);
  /// The request line of `fd` (without its newline), read within read_timeout_; nullopt when
  /// there is none to serve: the client went away, the server stops, or it was answered why.
  std::optional<std::string> read_request_line(int fd, int stop_fd) const;
  /// Throws std::runtime_error (why not, for the permission-denied response) unless the peer
  /// may talk to us.
  void check_peer(int fd) const;
  void reap_connections(bool all);

  std::string socket_path_;
  std::optional<gid_t> admin_group_;
  Handler handler_;
  std::chrono::milliseconds read_timeout_{5000};

  common::UniqueFd listen_fd_;
  common::UniqueFd stop_fd_;  // eventfd: readable once stop() was called
  dev_t socket_dev_ = 0;      // identity of the socket file we bound, so stop() only
  ino_t socket_ino_ = 0;      // unlinks our own
  std::jthread accept_thread_;
  std::list<Connection> connections_;  // only touched by the accept thread (and stop() after join)
  std::mutex lifecycle_mutex_;         // serialises start() and stop()
};

}  // namespace portalfs::mountmgr
