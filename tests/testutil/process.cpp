// SPDX-License-Identifier: MIT
#include "tests/testutil/process.hpp"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace portalfs::testutil {

namespace {
std::vector<char*> c_argv(const std::vector<std::string>& argv) {
  std::vector<char*> out;
  for (const auto& a : argv) out.push_back(const_cast<char*>(a.c_str()));
  out.push_back(nullptr);
  return out;
}

int decode(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}
}  // namespace

std::string build_dir() {
  const char* dir = std::getenv("PORTALFS_BUILD_DIR");
  return dir && *dir ? dir : PORTALFS_TEST_BUILD_DIR;
}

std::string source_dir() {
  const char* dir = std::getenv("PORTALFS_SOURCE_DIR");
  return dir && *dir ? dir : PORTALFS_TEST_SOURCE_DIR;
}

std::optional<std::string> optional_corpus(const std::string& name) {
  const auto dir = (std::filesystem::path(source_dir()) / ".." / "shared" / name).lexically_normal();
  if (std::filesystem::is_directory(dir)) return dir.string();
  const auto* test = ::testing::UnitTest::GetInstance()->current_test_info();
  std::cout << "[ CORPUS   ] " << (test ? std::string(test->test_suite_name()) + "." + test->name() + ": " : "")
            << dir.string() << " is absent (a plain clone): passes on tests/fixtures alone\n";
  return std::nullopt;
}

int count_compose_apps(const std::string& store) {
  int apps = 0;
  for (const auto& entry : std::filesystem::directory_iterator(store)) {
    apps += std::filesystem::exists(entry.path() / "docker-compose.yml.template");
  }
  return apps;
}

std::string program(const std::string& name) { return build_dir() + "/tools/" + name; }

CommandResult run_command(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) {
  int out[2], err[2];
  if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
  auto args = c_argv(argv);
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork");
  if (pid == 0) {
    int devnull = ::open("/dev/null", O_RDONLY);
    ::dup2(devnull, 0);
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(out[1]);
  ::close(err[1]);
  CommandResult r;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  int open_fds = 2;
  char buf[4096];
  while (open_fds > 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      ::kill(pid, SIGKILL);
      break;
    }
    if (::poll(fds, 2, static_cast<int>(left.count())) <= 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP))) continue;
      ssize_t n = ::read(fds[i].fd, buf, sizeof(buf));
      if (n <= 0) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        open_fds--;
      } else {
        (i == 0 ? r.out : r.err).append(buf, static_cast<size_t>(n));
      }
    }
  }
  for (auto& f : fds) {
    if (f.fd >= 0) ::close(f.fd);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  r.code = decode(status);
  return r;
}

Child::Child(const std::vector<std::string>& argv, const std::string& log_path) {
  auto args = c_argv(argv);
  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error("fork");
  if (pid_ == 0) {
    int devnull = ::open("/dev/null", O_RDONLY);
    ::dup2(devnull, 0);
    if (!log_path.empty()) {
      int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      ::dup2(log, 1);
      ::dup2(log, 2);
    }
    ::execv(args[0], args.data());
    ::_exit(127);
  }
}

Child::~Child() {
  if (!exited()) stop(SIGKILL, std::chrono::seconds(5));
}

bool Child::exited() {
  if (pid_ < 0) return true;
  int status = 0;
  pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    status_ = decode(status);
    pid_ = -1;
    return true;
  }
  return false;
}

int Child::wait(std::chrono::milliseconds timeout) {
  if (!wait_until([this] { return exited(); }, timeout)) return -1;
  return status_;
}

int Child::stop(int sig, std::chrono::milliseconds timeout) {
  if (pid_ < 0) return status_;
  ::kill(pid_, sig);
  if (!wait_until([this] { return exited(); }, timeout)) return -1;
  return status_;
}

std::string sanitizer_report(const std::string& output) {
  std::istringstream in(output);
  for (std::string line; std::getline(in, line);) {
    const bool sanitizer = line.find("Sanitizer") != std::string::npos &&
                           (line.find("ERROR: ") != std::string::npos ||
                            line.find("WARNING: ") != std::string::npos ||
                            line.find("SUMMARY: ") != std::string::npos);
    if (sanitizer || line.find(": runtime error: ") != std::string::npos) return line;
  }
  return "";
}

bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return pred();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace portalfs::testutil
