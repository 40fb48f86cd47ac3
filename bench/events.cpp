// SPDX-License-Identifier: MIT
// portalfs_bench_events WRITE_DIR WATCH_DIR [--files N]: the latency of change events across
// views (bench/run's "event-latency" row). WRITE_DIR and WATCH_DIR are one directory seen
// through two views (or the same directory twice, for a plain file system). N times: create and
// close a file in WRITE_DIR, and time from its close() until an inotify watch on WATCH_DIR
// reports its IN_CLOSE_WRITE. Prints one JSON line:
//   {"op":"event-latency","count":1000,"median_us":180,"p99_us":900,"missed":0}
// An event not seen within a second counts as missed (and is not in the figures).
// portalfs_bench_events --hold DIR: keeps an inotify watch on DIR (reading its events) until
// killed: the watcher of another app that bench/run keeps on a share.
#include <fcntl.h>
#include <poll.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace {

[[noreturn]] void usage(const std::string& problem) {
  std::fprintf(stderr, "portalfs_bench_events: %s; usage: portalfs_bench_events WRITE_DIR WATCH_DIR [--files N]\n",
               problem.c_str());
  std::exit(2);
}

// Waits up to 1 s for IN_CLOSE_WRITE of `name` on `fd`.
bool wait_close_write(int fd, const std::string& name) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  alignas(inotify_event) char buf[4096];
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    ssize_t n = ::read(fd, buf, sizeof(buf));
    for (ssize_t off = 0; off < n;) {
      const auto* e = reinterpret_cast<const inotify_event*>(buf + off);
      if ((e->mask & IN_CLOSE_WRITE) && e->len && name == e->name) return true;
      off += static_cast<ssize_t>(sizeof(inotify_event) + e->len);
    }
  }
  return false;
}

}  // namespace

// Holds a watch on `dir`, reading its events, until killed.
[[noreturn]] void hold(const std::string& dir) {
  int fd = ::inotify_init1(IN_CLOEXEC);
  if (fd < 0 || ::inotify_add_watch(fd, dir.c_str(), IN_ALL_EVENTS) < 0) usage(dir + ": " + std::strerror(errno));
  alignas(inotify_event) char buf[65536];
  for (;;) {
    if (::read(fd, buf, sizeof(buf)) < 0 && errno != EINTR) std::exit(1);
  }
}

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "--hold") hold(argv[2]);
  std::vector<std::string> pos;
  size_t files = 1000;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--files") {
      if (i + 1 >= argc) usage("--files: missing a value");
      std::string_view v = argv[++i];
      auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), files);
      if (ec != std::errc() || p != v.data() + v.size() || files == 0) usage("--files: expected a positive integer");
    } else {
      pos.push_back(arg);
    }
  }
  if (pos.size() != 2) usage("expected WRITE_DIR and WATCH_DIR");
  int in = ::inotify_init1(IN_CLOEXEC);
  if (in < 0 || ::inotify_add_watch(in, pos[1].c_str(), IN_CLOSE_WRITE) < 0) {
    usage(pos[1] + ": " + std::strerror(errno));
  }
  std::vector<double> us;
  size_t missed = 0;
  for (size_t i = 0; i < files; ++i) {
    const std::string name = "ev" + std::to_string(i);
    int fd = ::open((pos[0] + "/" + name).c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0 || ::write(fd, "x", 1) != 1) usage(pos[0] + "/" + name + ": " + std::strerror(errno));
    const auto t0 = std::chrono::steady_clock::now();  // the change is complete at its close
    ::close(fd);
    if (!wait_close_write(in, name)) {
      ++missed;
      continue;
    }
    us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
  }
  for (size_t i = 0; i < files; ++i) ::unlink((pos[0] + "/ev" + std::to_string(i)).c_str());
  std::sort(us.begin(), us.end());
  const auto at = [&](double q) { return us.empty() ? 0.0 : us[std::min(us.size() - 1, size_t(q * us.size()))]; };
  std::printf("{\"op\":\"event-latency\",\"count\":%zu,\"median_us\":%.0f,\"p99_us\":%.0f,\"missed\":%zu}\n",
              us.size(), at(0.5), at(0.99), missed);
  return 0;
}
