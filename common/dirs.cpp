// SPDX-License-Identifier: MIT
#include "common/dirs.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace portalfs::common {

std::string make_dirs(const std::string& path, mode_t mode, gid_t gid) {
  for (std::size_t pos = path.find('/', 1);; pos = path.find('/', pos + 1)) {
    const std::string prefix = path.substr(0, pos);
    if (!prefix.empty() && prefix != "/" && ::mkdir(prefix.c_str(), mode) == 0) {
      // mkdir applied the umask; chmod does not. A group of its own before the group bits
      // open it to that group.
      if (gid != static_cast<gid_t>(-1) && ::chown(prefix.c_str(), static_cast<uid_t>(-1), gid) != 0) {
        return "cannot give " + prefix + " its group: " + std::strerror(errno);
      }
      if (::chmod(prefix.c_str(), mode) != 0) return "cannot chmod " + prefix + ": " + std::strerror(errno);
    } else if (!prefix.empty() && prefix != "/" && errno != EEXIST) {
      return "cannot create " + prefix + ": " + std::strerror(errno);
    }
    if (pos == std::string::npos) return {};
  }
}

}  // namespace portalfs::common
