// SPDX-License-Identifier: MIT
// portalfs_bench_meta: the metadata workloads of bench/run, one operation per call, on a tree of
// FILES files spread over DIRS directories (DIR/d0000/f0000000 ...). Prints one JSON line:
//   {"op":"stat","count":10000,"passes":1,"seconds":0.21,"per_s":47619}
// --min-seconds S repeats a read-only op (stat, read, readdir, readdir-stat) over the whole tree
// until S seconds have passed, so that a fast warm op is not timed over a few milliseconds.
// Every target gets the same system calls: names are resolved relative to an O_PATH fd of their
// directory (no OPENDIR to a FUSE daemon, no path walk from the root per file).
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "bench/cli.hpp"

namespace portalfs::bench {
const char* const kProg = "portalfs_bench_meta";
const char* const kSynopsis = "OP DIR [--files N] [--dirs N] [--size BYTES] [--min-seconds S]";
}  // namespace portalfs::bench

namespace {

using portalfs::bench::fail;
using portalfs::bench::number;
using portalfs::bench::usage;

struct Args {
  std::string op;
  std::string dir;
  size_t files = 10000;
  size_t dirs = 100;
  size_t size = 4096;
  double min_seconds = 0;
};

std::string dir_name(size_t d) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "d%04zu", d);
  return buf;
}

std::string file_name(char prefix, size_t i) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%c%07zu", prefix, i);
  return buf;
}

/// Calls fn(dirfd, dirpath, index) for every file of the tree, directory by directory.
void for_each_file(const Args& a, bool create_dirs,
                   const std::function<void(int, const std::string&, size_t)>& fn) {
  int root = ::open(a.dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root < 0) fail(a.dir);
  size_t i = 0;
  for (size_t d = 0; d < a.dirs; ++d) {
    const std::string dn = dir_name(d);
    const std::string dpath = a.dir + "/" + dn;
    if (create_dirs && ::mkdirat(root, dn.c_str(), 0755) != 0) fail("mkdir " + dpath);
    int dfd = ::openat(root, dn.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) fail(dpath);
    const size_t here = a.files / a.dirs + (d < a.files % a.dirs ? 1 : 0);
    for (size_t f = 0; f < here; ++f) fn(dfd, dpath, i++);
    ::close(dfd);
  }
  ::close(root);
}

/// Lists every directory of the tree; with `stat_each`, also lstat()s every entry (ls -l).
size_t list(const Args& a, bool stat_each) {
  size_t entries = 0;
  for (size_t d = 0; d < a.dirs; ++d) {
    const std::string dpath = a.dir + "/" + dir_name(d);
    DIR* dp = ::opendir(dpath.c_str());
    if (!dp) fail("opendir " + dpath);
    errno = 0;
    while (dirent* e = ::readdir(dp)) {
      if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
      entries++;
      struct stat st {};
      if (stat_each && ::fstatat(::dirfd(dp), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        fail("stat " + dpath + "/" + e->d_name);
      }
    }
    if (errno != 0) fail("readdir " + dpath);
    ::closedir(dp);
  }
  return entries;
}

size_t run(const Args& a) {
  std::vector<char> buf(a.size > 0 ? a.size : 1, 'x');
  if (a.op == "create") {  // files of --size bytes: open, write, close
    for_each_file(a, true, [&](int dfd, const std::string& dp, size_t i) {
      const std::string n = file_name('f', i);
      int fd = ::openat(dfd, n.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
      if (fd < 0) fail("create " + dp + "/" + n);
      if (a.size > 0 && ::write(fd, buf.data(), a.size) != static_cast<ssize_t>(a.size)) {
        fail("write " + dp + "/" + n);
      }
      if (::close(fd) != 0) fail("close " + dp + "/" + n);
    });
    return a.files;
  }
  if (a.op == "gen") {  // empty files, no fd per file: the quick way to make a million
    for_each_file(a, true, [&](int, const std::string& dp, size_t i) {
      const std::string p = dp + "/" + file_name('f', i);
      if (::mknod(p.c_str(), S_IFREG | 0644, 0) != 0) fail("mknod " + p);
    });
    return a.files;
  }
  if (a.op == "stat") {
    for_each_file(a, false, [&](int dfd, const std::string& dp, size_t i) {
      const std::string n = file_name('f', i);
      struct stat st {};
      if (::fstatat(dfd, n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) fail("stat " + dp + "/" + n);
    });
    return a.files;
  }
  if (a.op == "read") {  // open + read the whole file + close
    for_each_file(a, false, [&](int dfd, const std::string& dp, size_t i) {
      const std::string n = file_name('f', i);
      int fd = ::openat(dfd, n.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) fail("open " + dp + "/" + n);
      while (::read(fd, buf.data(), buf.size()) > 0) {
      }
      ::close(fd);
    });
    return a.files;
  }
  if (a.op == "readdir") return list(a, false);
  if (a.op == "readdir-stat") return list(a, true);
  if (a.op == "rename") {  // fN -> rN in the same directory
    for_each_file(a, false, [&](int dfd, const std::string& dp, size_t i) {
      const std::string from = file_name('f', i), to = file_name('r', i);
      if (::renameat(dfd, from.c_str(), dfd, to.c_str()) != 0) fail("rename " + dp + "/" + from);
    });
    return a.files;
  }
  if (a.op == "unlink") {  // the renamed files, then the directories
    for_each_file(a, false, [&](int dfd, const std::string& dp, size_t i) {
      const std::string n = file_name('r', i);
      if (::unlinkat(dfd, n.c_str(), 0) != 0) fail("unlink " + dp + "/" + n);
    });
    for (size_t d = 0; d < a.dirs; ++d) {
      const std::string dpath = a.dir + "/" + dir_name(d);
      if (::rmdir(dpath.c_str()) != 0) fail("rmdir " + dpath);
    }
    return a.files;
  }
  usage("unknown OP \"" + a.op +
        "\" (create, gen, stat, read, readdir, readdir-stat, rename, unlink)");
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  std::vector<std::string_view> pos;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--files" || arg == "--dirs" || arg == "--size") {
      if (i + 1 >= argc) usage(std::string(arg) + ": missing a value");
      size_t v = number(arg, argv[++i]);
      (arg == "--files" ? a.files : arg == "--dirs" ? a.dirs : a.size) = v;
    } else if (arg == "--min-seconds") {
      if (i + 1 >= argc) usage("--min-seconds: missing a value");
      std::string_view text = argv[++i];
      auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), a.min_seconds);
      if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || a.min_seconds < 0) {
        usage("--min-seconds: expected seconds, got \"" + std::string(text) + "\"");
      }
    } else if (arg.starts_with("--")) {
      usage("unknown option " + std::string(arg));
    } else {
      pos.push_back(arg);
    }
  }
  if (pos.size() != 2) usage("expected OP and DIR");
  a.op = pos[0];
  a.dir = pos[1];
  if (a.dirs > a.files) usage("--dirs must not exceed --files");

  const bool repeatable = a.op == "stat" || a.op == "read" || a.op.starts_with("readdir");
  if (a.min_seconds > 0 && !repeatable) usage("--min-seconds: " + a.op + " changes the tree");
  auto t0 = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  size_t count = 0, passes = 0;
  do {
    count += run(a);
    passes++;
  } while (elapsed() < a.min_seconds);
  double s = elapsed();
  std::printf("{\"op\":\"%s\",\"count\":%zu,\"passes\":%zu,\"seconds\":%.6f,\"per_s\":%.1f}\n",
              a.op.c_str(), count, passes, s, s > 0 ? static_cast<double>(count) / s : 0.0);
  return 0;
}
