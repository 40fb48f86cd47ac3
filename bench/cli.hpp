// SPDX-License-Identifier: MIT
#pragma once

// What the bench tools share on their command line: the one-line usage error (exit 2), the
// failure of a system call (exit 1), and a positive number. Each tool defines its name and its
// synopsis (what follows the name in its usage line).

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

namespace portalfs::bench {

extern const char* const kProg;
extern const char* const kSynopsis;

[[noreturn]] inline void usage(const std::string& problem) {
  std::fprintf(stderr, "%s: %s; usage: %s %s\n", kProg, problem.c_str(), kProg, kSynopsis);
  std::exit(2);
}

[[noreturn]] inline void fail(const std::string& what) {
  std::fprintf(stderr, "%s: %s: %s\n", kProg, what.c_str(), std::strerror(errno));
  std::exit(1);
}

inline size_t number(std::string_view opt, std::string_view text) {
  size_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || v == 0) {
    usage(std::string(opt) + ": expected a positive integer, got \"" + std::string(text) + "\"");
  }
  return v;
}

}  // namespace portalfs::bench
