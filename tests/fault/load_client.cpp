// SPDX-License-Identifier: MIT
// portalfs_load: CLIENTS processes working for SECONDS on the views of apps load000..load<N-1>
// under a mounted portalfs (see scripts/load, which installs the apps and changes grants
// meanwhile). Each round a client picks an app and one of its views and, in its own
// directory there, creates, writes, reads back, renames, lists and unlinks a file. Errors the
// policy demands are counted apart from real ones:
//   own_media (granted read)          EROFS on every mutation
//   the toggled share (--toggle)      ENOENT while revoked, EROFS while granted read
// Prints "key value" lines: ops, real_errors, policy_errors, then one line per error kind.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace {

struct Options {
  std::string mount;
  int apps = 100;
  int clients = 8;
  int seconds = 300;
  std::string toggle;  // a share whose grant changes while we run
};

[[noreturn]] void usage(const std::string& problem) {
  std::cerr << "portalfs_load: " << problem
            << "; usage: portalfs_load --mount DIR [--apps N] [--clients N] [--seconds N] [--toggle SHARE]\n";
  std::exit(2);
}

int positive(const std::string& name, const std::string& text) {
  char* end = nullptr;
  long v = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end || v < 1 || v > 100000) usage(name + ": expected 1 to 100000, got \"" + text + "\"");
  return static_cast<int>(v);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc) usage(a + ": missing value");
    std::string v = argv[++i];
    if (a == "--mount") o.mount = v;
    else if (a == "--apps") o.apps = positive(a, v);
    else if (a == "--clients") o.clients = positive(a, v);
    else if (a == "--seconds") o.seconds = positive(a, v);
    else if (a == "--toggle") o.toggle = v;
    else usage("unknown option " + a);
  }
  if (o.mount.empty()) usage("--mount is required");
  return o;
}

enum class Kind { rw, ro, toggled };

class Client {
 public:
  Client(const Options& o, int id) : o_(o), id_(id), rng_(static_cast<unsigned>(id) * 7919u + 1) {}

  std::string run() {
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(o_.seconds);
    while (std::chrono::steady_clock::now() < end) round();
    std::ostringstream out;
    out << "ops " << ops_ << "\n";
    for (const auto& [k, n] : real_) out << "real " << k << " " << n << "\n";
    for (const auto& [k, n] : policy_) out << "policy " << k << " " << n << "\n";
    return out.str();
  }

 private:
  // Counts an op; false (and the error, policy or real) when it failed. Reads errno first
  // thing, so call it as check(op, kind, syscall(...) == 0).
  bool check(const char* op, Kind kind, bool ok) { return check_err(op, kind, ok, errno); }
  bool check_err(const char* op, Kind kind, bool ok, int err) {
    ++ops_;
    if (ok) return true;
    const bool demanded = (kind == Kind::ro && err == EROFS) ||
                          (kind == Kind::toggled && (err == ENOENT || err == EROFS));
    (demanded ? policy_ : real_)[std::string(op) + " " + strerrorname_np(err)]++;
    return false;
  }

  void round() {
    char app[16];
    std::snprintf(app, sizeof app, "load%03d", static_cast<int>(rng_() % static_cast<unsigned>(o_.apps)));
    const std::string base = o_.mount + "/apps/" + app;
    switch (rng_() % (o_.toggle.empty() ? 3 : 4)) {
      case 0: return work(base + "/data/data", Kind::rw);
      case 1: return work(base + "/shared/own_documents", Kind::rw);
      case 2: return work(base + "/shared/own_media", Kind::ro);
      default: return work(base + "/shared/" + o_.toggle, Kind::toggled);
    }
  }

  // One round in `view`: the client's directory, a file created, written, read back, renamed,
  // listed and unlinked. Stops at the first error (the rest would only repeat it).
  void work(const std::string& view, Kind kind) {
    const std::string dir = view + "/c" + std::to_string(id_);
    const std::string n = std::to_string(round_++);
    const std::string a = dir + "/f" + n, b = dir + "/g" + n;
    if (kind == Kind::ro) {
      // Readable, never writable (the client's directory can't exist here: try the root).
      check("readdir", kind, list(view));
      const std::string c = view + "/c" + std::to_string(id_) + "-" + n;
      int fd = ::open(c.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
      if (fd >= 0) {
        ::close(fd);
        ++ops_;
        real_["create-ro succeeded"]++;
      } else {
        check("create-ro", kind, false);
      }
      return;
    }
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST && !check("mkdir", kind, false)) return;
    std::string data(64 + rng_() % 16384, '\0');
    for (auto& c : data) c = static_cast<char>('a' + rng_() % 26);
    int fd = ::open(a.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (!check("create", kind, fd >= 0)) return;
    const bool wrote = ::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size());
    const int werr = errno;
    const bool closed = ::close(fd) == 0;
    const int cerr = errno;
    if (!check_err("write", kind, wrote, werr) || !check_err("close", kind, closed, cerr)) return;
    fd = ::open(a.c_str(), O_RDONLY | O_CLOEXEC);
    if (!check("open", kind, fd >= 0)) return;
    std::string back(data.size() + 1, '\0');
    ssize_t got = ::read(fd, back.data(), back.size());
    const int rerr = errno;
    ::close(fd);
    if (!check_err("read", kind, got >= 0, rerr)) return;
    back.resize(static_cast<size_t>(got));
    if (back != data) real_["read mismatch"]++;
    if (!check("rename", kind, ::rename(a.c_str(), b.c_str()) == 0)) return;
    if (!check("readdir", kind, list(dir))) return;
    check("unlink", kind, ::unlink(b.c_str()) == 0);
  }

  static bool list(const std::string& dir) {
    DIR* d = ::opendir(dir.c_str());
    if (!d) return false;
    errno = 0;
    while (::readdir(d)) {
    }
    const int err = errno;
    ::closedir(d);
    errno = err;
    return err == 0;
  }

  const Options& o_;
  const int id_;
  std::mt19937 rng_;
  uint64_t round_ = 0, ops_ = 0;
  std::map<std::string, uint64_t> real_, policy_;
};

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  struct Worker {
    pid_t pid;
    int out;
  };
  std::vector<Worker> workers;
  for (int id = 0; id < o.clients; ++id) {
    int p[2];
    if (::pipe(p) != 0) return 1;
    pid_t pid = ::fork();
    if (pid < 0) return 1;
    if (pid == 0) {
      ::close(p[0]);
      std::string report = Client(o, id).run();
      const char* at = report.data();
      size_t left = report.size();
      while (left > 0) {
        ssize_t n = ::write(p[1], at, left);
        if (n <= 0) ::_exit(1);
        at += n;
        left -= static_cast<size_t>(n);
      }
      ::_exit(0);
    }
    ::close(p[1]);
    workers.push_back({pid, p[0]});
  }

  uint64_t ops = 0, real = 0, policy = 0;
  std::map<std::string, uint64_t> kinds;
  int failed_clients = 0;
  for (const auto& w : workers) {
    std::string text;
    char buf[4096];
    for (ssize_t n; (n = ::read(w.out, buf, sizeof buf)) > 0;) text.append(buf, static_cast<size_t>(n));
    ::close(w.out);
    int status = 0;
    ::waitpid(w.pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) failed_clients++;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
      const auto last = line.rfind(' ');
      const uint64_t n = std::stoull(line.substr(last + 1));
      const std::string key = line.substr(0, last);
      if (key == "ops") {
        ops += n;
        continue;
      }
      (key.rfind("real ", 0) == 0 ? real : policy) += n;
      kinds[key] += n;
    }
  }
  std::cout << "ops " << ops << "\nreal_errors " << real << "\npolicy_errors " << policy
            << "\nfailed_clients " << failed_clients << "\n";
  for (const auto& [k, n] : kinds) std::cout << "error " << k << " " << n << "\n";
  return failed_clients == 0 ? 0 : 1;
}
