// SPDX-License-Identifier: MIT
// portalfs_bench_scale: the scale workload of bench/run (issue #14): many apps at once, each
// with several clients. Every DIR is one app's directory; CLIENTS threads work in each, for
// SECONDS, a mix of what apps do to their files:
//   40 % stat of one of the app's files          15 % open, pwrite 4 KiB, close
//   25 % open, pread 4 KiB, close                10 % create a new file with 4 KiB, close
//                                                10 % unlink the oldest file this client made
// Each client has its own subdirectory (DIR/cNN) with FILES files of 16 KiB, made before the
// clock starts. Prints one JSON line:
//   {"ops":123456,"seconds":60.0,"per_s":2057.6,"p50_us":310.2,"p99_us":2210.0,
//    "cpu_s":41.2,"cpu_s_per_100k":33.4}
// --cpu-of PID: the CPU seconds (user + system) that process spent during the run, for the
// server behind the directories (portalfsd, bindfs); without it, cpu_s is 0.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "bench/cli.hpp"

namespace portalfs::bench {
const char* const kProg = "portalfs_bench_scale";
const char* const kSynopsis = "DIR... [--clients N] [--files N] [--seconds S] [--cpu-of PID]";
}  // namespace portalfs::bench

namespace {

using portalfs::bench::fail;
using portalfs::bench::number;
using portalfs::bench::usage;

constexpr size_t kBlock = 4096;
constexpr size_t kFileSize = 4 * kBlock;

struct Args {
  std::vector<std::string> dirs;
  size_t clients = 4;
  size_t files = 32;
  double seconds = 60;
  long cpu_of = 0;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg.starts_with("--")) {
      if (i + 1 >= argc) usage(std::string(arg) + ": missing value");
      const std::string_view value = argv[++i];
      if (arg == "--clients") a.clients = number(arg, value);
      else if (arg == "--files") a.files = number(arg, value);
      else if (arg == "--seconds") a.seconds = static_cast<double>(number(arg, value));
      else if (arg == "--cpu-of") a.cpu_of = static_cast<long>(number(arg, value));
      else usage("unknown option " + std::string(arg));
    } else {
      a.dirs.emplace_back(arg);
    }
  }
  if (a.dirs.empty()) usage("no DIR");
  for (const auto& dir : a.dirs) {
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) usage(dir + ": not a directory");
  }
  return a;
}

// utime + stime of `pid`, in seconds (fields 14 and 15 of /proc/PID/stat, after the name).
double cpu_seconds(long pid) {
  if (pid == 0) return 0;
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto close = all.rfind(')');
  if (close == std::string::npos) {
    errno = ESRCH;
    fail("/proc/" + std::to_string(pid) + "/stat");
  }
  std::istringstream fields(all.substr(close + 2));
  std::string skip;
  for (int f = 3; f < 14; ++f) fields >> skip;  // state .. cmajflt
  unsigned long long utime = 0, stime = 0;
  fields >> utime >> stime;
  return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

std::string file_name(size_t i) { return "f" + std::to_string(i); }

// One client: its directory (an fd), its files, its latencies.
class Client {
 public:
  Client(const std::string& dir, size_t files, unsigned seed) : files_(files), rng_(seed) {
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) fail(dir);  // EEXIST: an earlier repetition
    dir_ = ::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dir_ < 0) fail(dir);
    const std::string block(kFileSize, 'x');
    for (size_t i = 0; i < files_; ++i) {
      const int fd = ::openat(dir_, file_name(i).c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (fd < 0 || ::write(fd, block.data(), block.size()) != static_cast<ssize_t>(block.size())) {
        fail(dir + "/" + file_name(i));
      }
      ::close(fd);
    }
    latencies_.reserve(1 << 20);
  }
  ~Client() {
    for (const auto& name : made_) ::unlinkat(dir_, name.c_str(), 0);
    ::close(dir_);
  }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  void run(const std::atomic<bool>& stop) {
    char buf[kBlock];
    std::memset(buf, 'y', sizeof buf);
    while (!stop.load(std::memory_order_relaxed)) {
      const auto start = std::chrono::steady_clock::now();
      one_op(buf);
      latencies_.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count());
    }
  }

  const std::vector<double>& latencies() const { return latencies_; }

 private:
  void one_op(char* buf) {
    const unsigned pick = rng_() % 100;
    const std::string name = file_name(rng_() % files_);
    const off_t offset = static_cast<off_t>((rng_() % (kFileSize / kBlock)) * kBlock);
    if (pick < 40) {
      struct stat st {};
      check(::fstatat(dir_, name.c_str(), &st, AT_SYMLINK_NOFOLLOW), "stat", name);
    } else if (pick < 65) {
      const int fd = check(::openat(dir_, name.c_str(), O_RDONLY | O_CLOEXEC), "open", name);
      check(static_cast<int>(::pread(fd, buf, kBlock, offset)), "read", name);
      ::close(fd);
    } else if (pick < 80) {
      const int fd = check(::openat(dir_, name.c_str(), O_WRONLY | O_CLOEXEC), "open", name);
      check(static_cast<int>(::pwrite(fd, buf, kBlock, offset)), "write", name);
      ::close(fd);
    } else if (pick < 90 || made_.empty()) {
      std::string made = "n" + std::to_string(::getpid()) + "-" + std::to_string(next_++);
      const int fd = check(::openat(dir_, made.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644), "create", made);
      check(static_cast<int>(::write(fd, buf, kBlock)), "write", made);
      ::close(fd);
      made_.push_back(std::move(made));
    } else {
      check(::unlinkat(dir_, made_.front().c_str(), 0), "unlink", made_.front());
      made_.pop_front();
    }
  }

  static int check(int rc, const char* op, const std::string& name) {
    if (rc < 0) fail(std::string(op) + " " + name);
    return rc;
  }

  int dir_ = -1;
  size_t files_;
  std::minstd_rand rng_;
  std::deque<std::string> made_;
  size_t next_ = 0;
  std::vector<double> latencies_;
};

double percentile(std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  const auto i = static_cast<size_t>(p * static_cast<double>(sorted.size() - 1));
  return sorted[i];
}

}  // namespace

int main(int argc, char** argv) {
  const Args args = parse(argc, argv);
  std::vector<std::unique_ptr<Client>> clients;
  unsigned seed = 1;
  for (const auto& dir : args.dirs) {
    for (size_t c = 0; c < args.clients; ++c) {
      clients.push_back(std::make_unique<Client>(dir + "/c" + std::to_string(c), args.files, seed++));
    }
  }

  std::atomic<bool> stop = false;
  const double cpu0 = cpu_seconds(args.cpu_of);
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::jthread> threads;
  for (auto& c : clients) threads.emplace_back([&stop, client = c.get()] { client->run(stop); });
  std::this_thread::sleep_for(std::chrono::duration<double>(args.seconds));
  stop = true;
  threads.clear();  // joins
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double cpu = cpu_seconds(args.cpu_of) - cpu0;

  std::vector<double> all;
  for (const auto& c : clients) all.insert(all.end(), c->latencies().begin(), c->latencies().end());
  std::sort(all.begin(), all.end());
  const double ops = static_cast<double>(all.size());
  std::printf("{\"ops\":%zu,\"seconds\":%.2f,\"per_s\":%.1f,\"p50_us\":%.1f,\"p99_us\":%.1f,\"cpu_s\":%.2f,"
              "\"cpu_s_per_100k\":%.2f}\n",
              all.size(), seconds, ops / seconds, percentile(all, 0.50), percentile(all, 0.99), cpu,
              ops > 0 ? cpu / ops * 100000 : 0.0);
  return 0;
}
