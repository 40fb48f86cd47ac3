// SPDX-License-Identifier: MIT
#include "tests/testutil/temp_dir.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <vector>

namespace portalfs::testutil {

TempDir::TempDir(const std::string& prefix) {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/" + prefix + "-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (!::mkdtemp(buf.data())) throw std::runtime_error("mkdtemp failed for " + tmpl);
  path_ = buf.data();
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

void write_file(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error("cannot write " + path);
  out << content;
  if (!out.flush()) throw std::runtime_error("cannot write " + path);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string state_files(const std::string& state_dir) {
  std::string out = read_file(state_dir + "/state.json");
  out += "\n-- state.journal --\n";
  if (std::ifstream(state_dir + "/state.journal")) out += read_file(state_dir + "/state.journal");
  return out;
}

std::string readlink_str(const std::string& path) {
  char buf[PATH_MAX + 1];
  ssize_t n = ::readlink(path.c_str(), buf, sizeof(buf));
  return n < 0 ? std::string("<readlink: ") + std::strerror(errno) + ">"
               : std::string(buf, static_cast<size_t>(n));
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

bool require_fuse() {
  const char* v = std::getenv("PORTALFS_REQUIRE_FUSE");
  return v && std::string(v) == "1";
}

}  // namespace portalfs::testutil
