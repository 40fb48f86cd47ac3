// SPDX-License-Identifier: MIT
#include "tests/testutil/daemon_fixture.hpp"

#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <iostream>

namespace portalfs::testutil {

using namespace std::chrono_literals;

void abort_connection_at(const std::string& mountpoint) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line, minor;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string id, parent, devno, root, mnt;
    ls >> id >> parent >> devno >> root >> mnt;
    if (mnt == mountpoint && devno.find(':') != std::string::npos) minor = devno.substr(devno.find(':') + 1);
  }
  if (minor.empty()) return;
  const std::string ctl = "/sys/fs/fuse/connections";
  if (!std::filesystem::exists(ctl + "/" + minor)) ::mount("fusectl", ctl.c_str(), "fusectl", 0, nullptr);
  std::ofstream(ctl + "/" + minor + "/abort") << "1";
}

void DaemonFixture::SetUp() {
  if (::access("/dev/fuse", R_OK | W_OK) != 0) PORTALFS_SKIP_OR_FAIL("no /dev/fuse");
  std::filesystem::create_directories(dir_ / "state");
  ::chmod(dir_.path().c_str(), 0755);  // containers' users reach the mount through here
}

void DaemonFixture::TearDown() {
  // SIGTERM first: a daemon built with sanitizers checks for leaks only when it exits by
  // itself. SIGKILL (by ~Child) only if it does not stop.
  if (daemon_ && !daemon_->exited() && daemon_->stop(SIGTERM, 30s) < 0) {
    std::cerr << "portalfsd did not stop within 30 s of SIGTERM; aborting its connection, killing it\n";
    abort_connection_at(mnt());
  }
  daemon_.reset();
  // A sanitizer report of any daemon this test started (they all append to one log) fails it.
  try {
    if (auto report = sanitizer_report(read_file(dir_ / "daemon.log")); !report.empty()) {
      ADD_FAILURE() << "portalfsd: " << report;
    }
  } catch (const std::exception&) {
  }
  if (HasFailure()) {
    try {
      std::cerr << "--- portalfsd log:\n" << read_file(dir_ / "daemon.log") << "---\n";
    } catch (const std::exception&) {
    }
  }
  if (mounted(mnt())) ::umount2(mnt().c_str(), MNT_DETACH);
}

std::vector<std::string> DaemonFixture::daemon_argv() const {
  std::vector<std::string> argv;
  // For debugging by hand: PORTALFS_DAEMON_WRAPPER="/usr/bin/gdb -batch -ex run -ex bt --args"
  if (const char* wrapper = std::getenv("PORTALFS_DAEMON_WRAPPER")) {
    std::istringstream words(wrapper);
    for (std::string w; words >> w;) argv.push_back(w);
  }
  for (const auto& a : {program("portalfsd"), std::string("--foreground"), std::string("--storage-root"),
                        storage(), std::string("--mountpoint"), mnt(), std::string("--state-dir"),
                        dir_ / "state", std::string("--socket"), sock()}) {
    argv.push_back(a);
  }
  argv.insert(argv.end(), extra_daemon_args_.begin(), extra_daemon_args_.end());
  return argv;
}

CommandResult DaemonFixture::ctl(std::vector<std::string> args) {
  args.insert(args.begin(), {program("portalctl"), "--socket", sock()});
  auto r = run_command(args);
  if (auto report = sanitizer_report(r.err); !report.empty()) {
    ADD_FAILURE() << "portalctl: " << report << "\n" << r.err;
  }
  return r;
}

void DaemonFixture::start() {
  // A killed daemon that did not exit (see abort_connection_at) is not left behind.
  if (daemon_ && !daemon_->exited()) {
    abort_connection_at(mnt());
    daemon_.reset();
  }
  daemon_ = std::make_unique<Child>(daemon_argv(), dir_ / "daemon.log");
  bool up = wait_until([&] { return ctl({"status"}).code == 0; }, 10s);
  ASSERT_TRUE(up) << "portalfsd did not come up:\n" << read_file(dir_ / "daemon.log");
}

void DaemonFixture::write_app(const std::string& app, const std::vector<std::pair<std::string, std::string>>& shares,
                              const std::string& data_dirs) {
  std::string shared;
  for (const auto& [name, access] : shares) {
    if (!shared.empty()) shared += ", ";
    shared += R"({"name": ")" + name + R"(", "path": "/)" + name + R"(", "access": ")" + access + R"("})";
  }
  write_file(dir_ / (app + ".json"),
             R"({"name": ")" + app + R"(", "v": "1", "data_dirs": )" + data_dirs + R"(, "shared_dirs": [)" + shared + "]}");
}

void DaemonFixture::install_apps(const std::vector<std::string>& apps) {
  for (const auto& app : apps) {
    const auto r = ctl({"app", "install", dir_ / (app + ".json")});
    ASSERT_EQ(r.code, 0) << app << ": " << r.err;
  }
}

bool DaemonFixture::mounted(const std::string& path) {
  std::ifstream in("/proc/self/mounts");
  std::string dev, mnt, rest;
  while (in >> dev >> mnt && std::getline(in, rest)) {
    if (mnt == path) return true;
  }
  return false;
}

}  // namespace portalfs::testutil
