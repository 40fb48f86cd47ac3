// SPDX-License-Identifier: MIT
#pragma once

// Running the project's programs from tests: capture output and exit code, or start a
// daemon and stop it by pid.

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace portalfs::testutil {

struct CommandResult {
  int code = -1;  // exit code, or 128 + signal
  std::string out;
  std::string err;
};

/// Runs argv (argv[0] is a path) to completion with stdin from /dev/null; kills it after
/// `timeout`.
CommandResult run_command(const std::vector<std::string>& argv,
                          std::chrono::milliseconds timeout = std::chrono::seconds(30));

/// The build directory ($PORTALFS_BUILD_DIR, else the one CMake configured).
std::string build_dir();
/// The source checkout ($PORTALFS_SOURCE_DIR, else the one CMake configured).
std::string source_dir();
/// The corpus `name` beside the checkout (source_dir()/../shared/<name>: the store's app.json
/// versions, its compose apps). CI has it; a plain clone does not. When it is absent this
/// prints one line naming it and returns nullopt, and the test over it passes: the fixtures in
/// tests/fixtures cover every shape without it.
std::optional<std::string> optional_corpus(const std::string& name);
/// The apps of a compose store: its subdirectories holding a docker-compose.yml.template.
int count_compose_apps(const std::string& store);
/// A built program: build_dir()/tools/<name>.
std::string program(const std::string& name);

/// A child process started in the background, killed (SIGKILL) by pid on destruction if it
/// still runs. Its stdout and stderr go to `log_path` when given.
class Child {
 public:
  explicit Child(const std::vector<std::string>& argv, const std::string& log_path = "");
  ~Child();
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  [[nodiscard]] pid_t pid() const { return pid_; }
  /// Sends `sig` and waits up to `timeout` for the exit; returns the exit code (128+signal
  /// when killed), or -1 if it did not exit in time.
  int stop(int sig, std::chrono::milliseconds timeout = std::chrono::seconds(10));
  /// Waits up to `timeout` for it to exit by itself; returns as stop() does.
  int wait(std::chrono::milliseconds timeout);
  /// Whether it has exited (reaps it), without waiting.
  bool exited();

 private:
  pid_t pid_ = -1;
  int status_ = -1;
};

/// The first line of a sanitizer report (ASan, LSan, UBSan, TSan) in a program's output, or ""
/// when there is none. A child's report does not fail the test by itself: the test looks.
std::string sanitizer_report(const std::string& output);

/// Polls `pred` every 10 ms until it is true or `timeout` passes; returns its last value.
bool wait_until(const std::function<bool()>& pred,
                std::chrono::milliseconds timeout = std::chrono::seconds(5));

}  // namespace portalfs::testutil
