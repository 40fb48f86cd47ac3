// SPDX-License-Identifier: MIT
#include "fuse/backing_fs.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>

#include <fstream>
#include <sstream>

#include "common/unique_fd.hpp"

namespace portalfs::fuse {

namespace {
constexpr long kFuseSuperMagic = 0x65735546;  // linux/magic.h FUSE_SUPER_MAGIC

// The type of the mount with device `dev` in /proc/self/mountinfo (field after " - ").
std::string mount_type(dev_t dev) {
  std::ifstream in("/proc/self/mountinfo");
  const std::string want = std::to_string(major(dev)) + ":" + std::to_string(minor(dev));
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    std::string id, parent, devno;
    fields >> id >> parent >> devno;
    if (devno != want) continue;
    const auto dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    std::istringstream rest(line.substr(dash + 3));
    std::string type;
    rest >> type;
    return type;
  }
  return "";
}
}  // namespace

BackingFs probe_backing_fs(const std::string& path) {
  BackingFs out;
  // A first start makes the storage root later: what it will be on is its nearest ancestor's.
  std::string at = path;
  while (::access(at.c_str(), F_OK) != 0 && at.find('/') != std::string::npos && at != "/") {
    at = at.substr(0, at.find_last_of('/'));
    if (at.empty()) at = "/";
  }
  common::UniqueFd fd(::open(at.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  struct statfs sf {};
  struct stat st {};
  if (!fd || ::fstatfs(fd.get(), &sf) != 0 || ::fstat(fd.get(), &st) != 0) return out;
  out.fuse = sf.f_type == kFuseSuperMagic;
  out.type = mount_type(st.st_dev);
  if (out.type.empty()) out.type = out.fuse ? "fuse" : "unknown";
  return out;
}

std::vector<std::string> fit_to_backing(Options& options, const BackingFs& fs) {
  std::vector<std::string> lines;
  if (!fs.fuse) return lines;
  const std::string on = "storage root on " + fs.type + ": ";
  options.backing_handles = false;
  lines.push_back(on + "its file handles go stale once the kernel drops an inode (no FUSE export "
                       "support); inodes keep their O_PATH fds open instead of re-opening by handle");
  options.host_watch = false;
  options.data_timeout = options.attr_timeout;
  lines.push_back(on + "no fanotify file system mark; changes from other nodes or the host reach every "
                       "view within its " + std::to_string(static_cast<int>(options.attr_timeout)) +
                       " s attribute timeout (data views too, instead of 60 s)");
  options.dir_streams = true;
  lines.push_back(on + "each open of a view's directory keeps its listing's stream on " + fs.type +
                       " from one READDIR to the next, and the kernel serves a cached listing only "
                       "while its entries' attributes are fresh (half the entry timeout)");
  if (options.passthrough) {
    options.passthrough = false;
    lines.push_back(on + "no kernel passthrough: the kernel opens a passed-through file again as the calling "
                         "app, and " + fs.type + " would judge the app's uid, not its grant; reads and writes "
                         "are served by portalfsd");
  }
  return lines;
}

}  // namespace portalfs::fuse
