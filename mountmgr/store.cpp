// SPDX-License-Identifier: MIT
#include "mountmgr/store.hpp"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "common/unique_fd.hpp"

namespace portalfs::mountmgr {
namespace {

using common::UniqueFd;

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape(std::string_view field) {
  std::string out;
  out.reserve(field.size());
  for (std::size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size()) {
      const std::string_view oct = field.substr(i + 1, 3);
      if (oct.find_first_not_of("01234567") == std::string_view::npos) {
        out += static_cast<char>(((oct[0] - '0') << 6) | ((oct[1] - '0') << 3) | (oct[2] - '0'));
        i += 3;
        continue;
      }
    }
    out += field[i];
  }
  return out;
}

std::vector<std::string_view> fields_of(std::string_view line) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && line[i] == ' ') ++i;
    if (i >= line.size()) break;
    std::size_t j = line.find(' ', i);
    if (j == std::string_view::npos) j = line.size();
    out.push_back(line.substr(i, j - i));
    i = j;
  }
  return out;
}

std::string read_small(int fd, std::size_t max) {
  std::string out(max, '\0');
  std::size_t got = 0;
  while (got < max) {
    const ssize_t n = ::read(fd, out.data() + got, max - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<std::size_t>(n);
  }
  out.resize(got);
  return out;
}

std::string read_mountinfo() {
  UniqueFd fd(::open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC));
  if (!fd) return {};
  std::string out;
  char buf[16384];
  while (true) {
    const ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

std::string describe_mount(const std::optional<MountInfo>& m) {
  if (!m) return "an unknown file system";
  std::string out = (m->fs_type.empty() ? std::string("a file system") : m->fs_type) + " from " +
                    (m->source.empty() ? std::string("?") : m->source);
  return out + " mounted at " + m->mount_point;
}

}  // namespace

std::optional<MountInfo> parse_mountinfo_line(std::string_view line) {
  if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
  const auto f = fields_of(line);
  // id parent major:minor root mount_point options [optional...] - type source super_options
  if (f.size() < 9) return std::nullopt;
  MountInfo m;
  const auto [p, ec] = std::from_chars(f[0].data(), f[0].data() + f[0].size(), m.id);
  if (ec != std::errc() || p != f[0].data() + f[0].size()) return std::nullopt;
  std::size_t dash = 6;
  while (dash < f.size() && f[dash] != "-") ++dash;
  if (dash + 2 >= f.size()) return std::nullopt;
  m.mount_point = unescape(f[4]);
  m.fs_type = unescape(f[dash + 1]);
  m.source = unescape(f[dash + 2]);
  for (std::size_t i = 6; i < dash; ++i) m.propagation += (i == 6 ? "" : " ") + std::string(f[i]);
  if (dash + 3 < f.size()) m.super_options = f[dash + 3];
  return m;
}

std::optional<MountInfo> find_mount(std::string_view mountinfo, uint64_t mnt_id) {
  while (!mountinfo.empty()) {
    std::size_t nl = mountinfo.find('\n');
    const std::string_view line = mountinfo.substr(0, nl);
    mountinfo.remove_prefix(nl == std::string_view::npos ? mountinfo.size() : nl + 1);
    auto m = parse_mountinfo_line(line);
    if (m && m->id == mnt_id) return m;
  }
  return std::nullopt;
}

bool valid_store_id(std::string_view text) {
  return text.size() == 32 && text.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

std::optional<std::string> parse_store_marker(std::string_view content) {
  if (!content.ends_with('\n')) return std::nullopt;
  content.remove_suffix(1);
  if (!valid_store_id(content)) return std::nullopt;
  return std::string(content);
}

StoreProbe probe_store_fd(int dir_fd, bool describe) {
  StoreProbe probe;
  struct statx sx {};
  if (::statx(dir_fd, "", AT_EMPTY_PATH, STATX_MNT_ID, &sx) == 0 && (sx.stx_mask & STATX_MNT_ID)) {
    probe.mnt_id = sx.stx_mnt_id;
  }
  if (describe && probe.mnt_id != 0) probe.mount = find_mount(read_mountinfo(), probe.mnt_id);
  struct statfs sf {};
  if (::fstatfs(dir_fd, &sf) == 0) {
    uint32_t words[2];
    static_assert(sizeof(words) == sizeof(sf.f_fsid));
    std::memcpy(words, &sf.f_fsid, sizeof(words));
    if (words[0] || words[1]) {
      char hex[17];
      std::snprintf(hex, sizeof(hex), "%08x%08x", words[0], words[1]);
      probe.fsid = hex;
    }
  }
  // O_NONBLOCK: a fifo planted as the marker must not hang the check.
  UniqueFd fd(::openat(dir_fd, kStoreMarker, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (!fd) {
    probe.marker_problem = errno == ENOENT ? "missing" : std::strerror(errno);
    return probe;
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    probe.marker_problem = "not a regular file";
    return probe;
  }
  probe.marker = parse_store_marker(read_small(fd.get(), 64));
  if (!probe.marker) probe.marker_problem = "does not hold a store id";
  return probe;
}

StoreProbe probe_store(const std::string& path, bool describe) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) {
    StoreProbe probe;
    probe.error = std::strerror(errno);
    return probe;
  }
  return probe_store_fd(fd.get(), describe);
}

std::string store_mismatch(const StoreRecord& record, const StoreProbe& probe) {
  if (probe.error.empty() && probe.marker == record.id) return "";
  std::string expected = "expected the file system with store id " + record.id;
  if (!record.fs_type.empty() || !record.source.empty()) {
    expected += " (" + (record.fs_type.empty() ? std::string("?") : record.fs_type) + " from " +
                (record.source.empty() ? std::string("?") : record.source) + " when first served)";
  }
  const std::string marker = record.path + "/" + kStoreMarker;
  if (!probe.error.empty()) return record.path + ": " + probe.error + "; " + expected;
  std::string found = "leads to " + describe_mount(probe.mount);
  if (probe.marker) {
    found += ", whose " + marker + " holds another id (" + *probe.marker + ")";
  } else {
    found += ", where " + marker + " is " + probe.marker_problem;
  }
  return record.path + " " + found + "; " + expected + " (if this is the right disk: echo " + record.id + " > " +
         marker + ")";
}

std::string new_store_id() {
  unsigned char bytes[16];
  std::size_t got = 0;
  while (got < sizeof(bytes)) {
    const ssize_t n = ::getrandom(bytes + got, sizeof(bytes) - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw std::runtime_error(std::string("cannot make a store id: getrandom: ") + std::strerror(errno));
    got += static_cast<std::size_t>(n);
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : bytes) {
    out += kHex[b >> 4];
    out += kHex[b & 0xf];
  }
  return out;
}

void write_store_marker(int dir_fd, const std::string& display_dir, const std::string& id) {
  const std::string file = display_dir + "/" + kStoreMarker;
  const std::string tmp = std::string(kStoreMarker) + ".new";
  auto fail = [&](const std::string& what) {
    const int err = errno;
    ::unlinkat(dir_fd, tmp.c_str(), 0);
    throw std::runtime_error(file + ": cannot " + what + ": " + std::strerror(err));
  };
  ::unlinkat(dir_fd, tmp.c_str(), 0);
  UniqueFd fd(::openat(dir_fd, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0444));
  if (!fd) fail("create");
  const std::string content = id + "\n";
  if (::write(fd.get(), content.data(), content.size()) != static_cast<ssize_t>(content.size())) fail("write");
  if (::fsync(fd.get()) != 0) fail("sync");
  if (::renameat(dir_fd, tmp.c_str(), dir_fd, kStoreMarker) != 0) fail("rename into place");
  if (::fsync(dir_fd) != 0) {
    throw std::runtime_error(file + ": cannot sync its directory: " + std::strerror(errno));
  }
}

}  // namespace portalfs::mountmgr
