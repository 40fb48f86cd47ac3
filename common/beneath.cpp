// SPDX-License-Identifier: MIT
#include "common/beneath.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <cstring>

namespace portalfs::common {

bool valid_component(std::string_view c) {
  return !c.empty() && c != "." && c != ".." && c.find('/') == std::string_view::npos &&
         c.find('\0') == std::string_view::npos;
}

std::vector<std::string> split_components(std::string_view relative) {
  std::vector<std::string> out;
  if (relative.empty()) return out;
  std::size_t start = 0;
  while (true) {
    const std::size_t end = relative.find('/', start);
    out.emplace_back(relative.substr(start, end == std::string_view::npos ? end : end - start));
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  return out;
}

Result<UniqueFd> open_beneath(int dir_fd, const std::vector<std::string>& components, int last_flags,
                              WalkFailure* failure) {
  const int last = last_flags | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
  if (components.empty()) {
    UniqueFd fd(::openat(dir_fd, ".", last));
    if (!fd) return Errno{errno};
    return fd;
  }
  int cur = dir_fd;
  UniqueFd held;
  for (std::size_t i = 0; i < components.size(); ++i) {
    const bool is_last = i + 1 == components.size();
    auto fail = [&](int err) -> Result<UniqueFd> {
      if (failure) {
        *failure = {i, err, false};
        struct stat st {};
        if ((err == ENOTDIR || err == ELOOP) &&
            ::fstatat(cur, components[i].c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
          failure->is_symlink = S_ISLNK(st.st_mode);
        }
      }
      return Errno{err};
    };
    if (!valid_component(components[i])) return fail(EINVAL);
    UniqueFd next(::openat(cur, components[i].c_str(),
                           is_last ? last : O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!next) return fail(errno);
    held = std::move(next);
    cur = held.get();
  }
  return held;
}

std::string describe_walk_failure(std::string_view base, const std::vector<std::string>& components,
                                  const WalkFailure& failure) {
  std::string path(base);
  for (std::size_t i = 0; i <= failure.component && i < components.size(); ++i) {
    if (path.empty() || path.back() != '/') path += '/';
    path += components[i];
  }
  if (failure.is_symlink) return path + ": is a symbolic link; refusing to follow it";
  if (failure.err == ENOTDIR) return path + ": is not a directory";
  if (failure.err == EINVAL) return path + ": bad path component";
  return path + ": " + std::strerror(failure.err);
}

}  // namespace portalfs::common
