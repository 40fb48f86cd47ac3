// SPDX-License-Identifier: MIT
#include "tools/doctor.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "fuse/privileges.hpp"
#include "mountmgr/control_client.hpp"
#include "mountmgr/quota.hpp"
#include "mountmgr/state_store.hpp"
#include "mountmgr/store.hpp"

namespace portalfs::tools {
namespace {

enum class Result { pass, warn, fail };

struct Check {
  std::string name;
  Result result = Result::pass;
  std::string detail;
  std::string fix;  // a command; only for WARN and FAIL
};

const char* result_name(Result r) {
  switch (r) {
    case Result::pass: return "PASS";
    case Result::warn: return "WARN";
    case Result::fail: return "FAIL";
  }
  return "?";
}

Check pass(std::string name, std::string detail) { return {std::move(name), Result::pass, std::move(detail), {}}; }
Check warn(std::string name, std::string detail, std::string fix) {
  return {std::move(name), Result::warn, std::move(detail), std::move(fix)};
}
Check fail(std::string name, std::string detail, std::string fix) {
  return {std::move(name), Result::fail, std::move(detail), std::move(fix)};
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::vector<mountmgr::MountInfo> mounts() {
  std::vector<mountmgr::MountInfo> out;
  std::istringstream lines(read_text("/proc/self/mountinfo"));
  for (std::string line; std::getline(lines, line);) {
    if (auto m = mountmgr::parse_mountinfo_line(line)) out.push_back(std::move(*m));
  }
  return out;
}

// The mount `path` is on (its own, when something is mounted there), from the mount table
// alone: a hung FUSE mount on the way must not hang the doctor.
std::optional<mountmgr::MountInfo> mount_of(const std::string& path) {
  std::optional<mountmgr::MountInfo> best;
  for (auto& m : mounts()) {
    const bool contains = m.mount_point == "/" || path == m.mount_point || path.starts_with(m.mount_point + "/");
    if (contains && (!best || m.mount_point.size() >= best->mount_point.size())) best = std::move(m);
  }
  return best;
}

// statfs(path)'s errno (0: it answered), ETIMEDOUT when no answer came within two seconds:
// asked in a child, which is killed then (a FUSE request's wait is killable).
int statfs_errno(const std::string& path) {
  const pid_t pid = ::fork();
  if (pid < 0) return errno;
  if (pid == 0) {
    struct statfs st {};
    ::_exit(::statfs(path.c_str(), &st) == 0 ? 0 : errno);
  }
  int status = 0;
  for (int waited_ms = 0; waited_ms < 2000; waited_ms += 10) {
    if (::waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : EIO;
    ::usleep(10000);
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
  return ETIMEDOUT;
}

// ---- the checks ----

Check check_config(const std::vector<std::string>& args, DaemonOptions& out) {
  try {
    out = parse_daemon_options(args, read_config_file);
  } catch (const UsageError& e) {
    out = parse_daemon_options(std::vector<std::string>{});
    return fail("config", e.problem() + " (checked the rest with the defaults)",
                "edit the file named, then: portalctl doctor");
  }
  const std::string file = args.empty() ? kDefaultConfig : args.back();
  struct stat st {};
  return pass("config", ::stat(file.c_str(), &st) == 0 ? file + " read" : "no " + file + ": the defaults");
}

Check check_fuse_device() {
  if (::access("/dev/fuse", R_OK | W_OK) == 0) return pass("fuse-device", "/dev/fuse is usable");
  return fail("fuse-device", std::string("/dev/fuse: ") + std::strerror(errno),
              "modprobe fuse (in a container: run it with --device /dev/fuse)");
}

// Linux major.minor of this kernel; {0, 0} when uname can't tell.
std::pair<int, int> kernel_version(std::string* release) {
  utsname u{};
  if (::uname(&u) != 0) return {0, 0};
  *release = u.release;
  int major = 0, minor = 0;
  if (std::sscanf(u.release, "%d.%d", &major, &minor) != 2) return {0, 0};
  return {major, minor};
}

std::vector<Check> check_kernel() {
  std::string release;
  const auto version = kernel_version(&release);
  auto at_least = [&](int major, int minor) { return version >= std::pair{major, minor}; };
  std::vector<Check> out;
  out.push_back(at_least(6, 9) ? pass("fuse-passthrough", "Linux " + release + " passes data views' files through")
                               : warn("fuse-passthrough", "Linux " + release + " has no FUSE passthrough: data views are served by the daemon, slower",
                                      "apt-get install -t bookworm-backports linux-image-amd64 (Linux 6.9 or later), then reboot"));
  out.push_back(at_least(6, 12) ? pass("fuse-idmapped-mounts", "Linux " + release + " can idmap FUSE mounts")
                                : warn("fuse-idmapped-mounts", "Linux " + release + " can't idmap FUSE mounts (6.12 or later can)",
                                       "apt-get install -t bookworm-backports linux-image-amd64, then reboot"));
  const std::string uring = "/sys/module/fuse/parameters/enable_uring";
  const std::string value = read_text(uring);
  if (value.starts_with("Y")) {
    out.push_back(pass("fuse-io-uring", "enabled (libfuse 3.14 does not use it yet)"));
  } else if (!value.empty()) {
    out.push_back(warn("fuse-io-uring", "FUSE over io_uring is off (libfuse 3.14 does not use it yet)", "echo Y > " + uring));
  } else {
    out.push_back(warn("fuse-io-uring", "Linux " + release + " has no FUSE over io_uring (6.14 or later has)",
                       "apt-get install -t bookworm-backports linux-image-amd64, then reboot"));
  }
  return out;
}

Check check_propagation(const std::string& mountpoint) {
  auto m = mount_of(mountpoint);
  if (!m) return warn("mount-propagation", "cannot tell which mount " + mountpoint + " is on", "findmnt -T " + mountpoint);
  if (m->propagation.find("shared:") != std::string::npos) {
    return pass("mount-propagation", mountpoint + " is on " + m->mount_point + ", shared: new views reach containers' namespaces");
  }
  return warn("mount-propagation",
              mountpoint + " is on " + m->mount_point + ", " + (m->propagation.empty() ? "private" : m->propagation) +
                  ": a mount made there does not propagate into Docker's mount namespace",
              "mount --make-rshared " + m->mount_point);
}

Check check_allow_other() {
  std::istringstream lines(read_text("/etc/fuse.conf"));
  for (std::string line; std::getline(lines, line);) {
    if (line.find("user_allow_other") == 0) return pass("user-allow-other", "set in /etc/fuse.conf");
  }
  return warn("user-allow-other", "not set in /etc/fuse.conf: only root can run portalfsd (not a rootless one)",
              "echo user_allow_other >> /etc/fuse.conf");
}

// Who runs portalfsd: root has every privilege it uses; an ordinary user (rootless) mounts
// through the set-uid fusermount3 and goes without what needs root (fuse/privileges.hpp). The
// doctor is run by the user who runs the daemon, so it probes its own.
Check check_privileges() {
  const auto missing = fuse::Privileges::probe().missing();
  if (missing.empty()) return pass("privileges", "root: every privilege portalfsd uses");
  const std::string who = "rootless (uid " + std::to_string(::geteuid()) + ")";
  struct stat st {};
  const bool fusermount = ::stat("/usr/bin/fusermount3", &st) == 0 && (st.st_mode & S_ISUID) && st.st_uid == 0;
  if (!fusermount) {
    return fail("privileges", who + ": no set-uid /usr/bin/fusermount3, so portalfsd can't mount",
                "apt-get install fuse3 (as root)");
  }
  std::string detail = who + ", goes without:";
  for (const auto& line : missing) detail += " " + line + ";";
  detail.pop_back();
  return warn("privileges", detail, "run portalfsd as root (systemctl start portalfsd) for the rest");
}

Check check_runtimes() {
  std::string found;
  const char* path_env = std::getenv("PATH");
  const std::string path = path_env ? path_env : "/usr/sbin:/usr/bin:/sbin:/bin";
  for (const char* runtime : {"runc", "crun", "docker", "podman"}) {
    std::istringstream dirs(path);
    for (std::string dir; std::getline(dirs, dir, ':');) {
      if (!dir.empty() && ::access((dir + "/" + runtime).c_str(), X_OK) == 0) {
        found += (found.empty() ? "" : ", ") + std::string(runtime);
        break;
      }
    }
  }
  if (!found.empty()) return pass("container-runtimes", found);
  return warn("container-runtimes", "none of runc, crun, docker, podman in PATH", "apt-get install runc");
}

Check check_storage(const std::string& storage_root) {
  auto m = mount_of(storage_root);
  if (!m) return warn("storage-fs", "cannot tell which file system holds " + storage_root, "findmnt -T " + storage_root);
  struct stat st {};
  const bool made = ::stat(storage_root.c_str(), &st) == 0;
  const std::string where = storage_root + (made ? "" : " (not made yet)") + " is on " + m->fs_type +
                            " (" + m->source + " at " + m->mount_point + ")";
  // btrfs always has qgroups (no quota format to build in): limits on subvolumes are the kernel's.
  if (m->fs_type == "btrfs") {
    return pass("storage-fs", where + ": apps' data roots and shares are made as subvolumes, which portalctl quota set "
                "limits (bytes) with btrfs qgroups, enforced by the kernel; a limit on a directory made before is "
                "accounted by portalfsd (portalctl usage says which)");
  }
  // The kernel's own answer when the root exists: what `portalctl quota set` goes by.
  if (made) {
    const int fd = ::open(storage_root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    const std::string why = fd < 0 ? std::strerror(errno) : mountmgr::probe_project_quotas(fd);
    if (fd >= 0) ::close(fd);
    if (why.empty()) return pass("storage-fs", where + " with project quotas: portalctl quota set limits apps and shares");
    // Limits still work (portalfsd accounts them), at the cost of passthrough for their views.
    return warn("storage-fs", where + ": no project quotas, so portalfsd accounts quota limits itself and serves "
                "limited data views without passthrough (" + why + ")",
                "mkfs.ext4 -O quota,project (or tune2fs -O quota,project " + m->source + " unmounted), then mount -o prjquota");
  }
  for (const char* quota : {"prjquota", "usrquota", "grpquota", "usrjquota", "grpjquota", "quota"}) {
    if (("," + m->super_options + ",").find("," + std::string(quota)) != std::string::npos) {
      return pass("storage-fs", where + " with " + quota);
    }
  }
  if (m->fs_type == "xfs" || m->fs_type == "ext4") {
    return warn("storage-fs", where + " without quotas: an app can fill the disk",
                "mount -o remount,prjquota " + m->mount_point + "  (ext4: tune2fs -O quota,project " + m->source + " first, unmounted)");
  }
  return warn("storage-fs", where + ": no project quotas on " + m->fs_type + ", an app can fill the disk",
              "put the storage root on ext4 or xfs mounted with prjquota");
}

// The daemon's pid from its state lock (the store writes it there), if it runs.
std::optional<pid_t> daemon_pid(const std::string& state_dir) {
  const std::string text = read_text(state_dir + "/state.lock");
  const pid_t pid = static_cast<pid_t>(std::atol(text.c_str()));
  if (pid <= 0 || ::kill(pid, 0) != 0) return std::nullopt;
  return pid;
}

Check check_open_files(const std::string& state_dir) {
  constexpr unsigned long kWanted = 65536;
  unsigned long limit = 0;
  std::string whose;
  if (auto pid = daemon_pid(state_dir)) {
    std::istringstream lines(read_text("/proc/" + std::to_string(*pid) + "/limits"));
    for (std::string line; std::getline(lines, line);) {
      if (line.starts_with("Max open files")) limit = std::strtoul(line.c_str() + 14, nullptr, 10);
    }
    whose = "portalfsd (pid " + std::to_string(*pid) + ")";
  } else {
    rlimit r{};
    ::getrlimit(RLIMIT_NOFILE, &r);
    limit = r.rlim_max == RLIM_INFINITY ? kWanted : r.rlim_max;  // the daemon raises its soft limit to this
    whose = "a portalfsd started from this shell";
  }
  const std::string detail = whose + " may open " + std::to_string(limit) + " files";
  if (limit >= kWanted) return pass("open-files", detail);
  return warn("open-files", detail + ": fewer than " + std::to_string(kWanted) + ", apps holding many files get EMFILE",
              "LimitNOFILE=65536 in portalfsd.service (or ulimit -Hn 65536 before starting portalfsd)");
}

std::vector<Check> check_stale_mounts() {
  std::vector<Check> out;
  for (const auto& m : mounts()) {
    if (m.fs_type != "fuse.portalfs") continue;
    const int err = statfs_errno(m.mount_point);
    if (err == ENOTCONN) {
      out.push_back(fail("stale-mounts", "dead portalfs mount at " + m.mount_point + " (its daemon is gone)",
                         "umount -l " + m.mount_point));
    } else if (err == ETIMEDOUT) {
      out.push_back(fail("stale-mounts", "the portalfs mount at " + m.mount_point + " does not answer (its daemon hangs)",
                         "kill -9 the portalfsd serving it, then: umount -l " + m.mount_point));
    }
  }
  if (out.empty()) out.push_back(pass("stale-mounts", "no dead portalfs mount"));
  return out;
}

Check check_state(const std::string& state_dir) {
  const auto state = mountmgr::check_state_file(state_dir);
  if (state.missing) return pass("state", "no " + state.path + " yet: a first start begins empty");
  if (state.problem.empty()) return pass("state", state.path + " is good");
  struct stat st {};
  const std::string backup = state.path + ".bak";
  return fail("state", state.path + ": " + state.problem,
              ::stat(backup.c_str(), &st) == 0 ? "portalfsd --recover-from-backup (uses " + backup + ")"
                                               : "mv " + state.path + " " + state.path + ".bad (portalfsd then starts empty)");
}

Check check_daemon(const std::string& socket) {
  try {
    auto response = mountmgr::ControlClient(std::chrono::seconds(3)).call(socket, {{"verb", "status"}, {"format", "json"}, {"args", nlohmann::json::object()}});
    if (response.value("ok", false)) return pass("daemon", "portalfsd answers on " + socket);
  } catch (const std::exception& e) {
    return warn("daemon", "portalfsd does not answer on " + socket + ": " + e.what(), "systemctl start portalfsd");
  }
  return warn("daemon", "portalfsd on " + socket + " refused a status request", "journalctl -u portalfsd");
}

std::vector<Check> run_checks(const CtlCommand& cmd) {
  std::vector<std::string> args;
  if (cmd.args.contains("config")) args = {"--config", cmd.args["config"].get<std::string>()};
  DaemonOptions o;
  std::vector<Check> out = {check_config(args, o), check_fuse_device()};
  for (auto& c : check_kernel()) out.push_back(std::move(c));
  out.push_back(check_propagation(o.mountpoint));
  out.push_back(check_allow_other());
  out.push_back(check_privileges());
  out.push_back(check_runtimes());
  out.push_back(check_storage(o.storage_root));
  out.push_back(check_open_files(o.state_dir));
  for (auto& c : check_stale_mounts()) out.push_back(std::move(c));
  out.push_back(check_state(o.state_dir));
  out.push_back(check_daemon(o.socket));
  return out;
}

}  // namespace

ExitCode run_doctor(const CtlCommand& cmd) {
  const auto checks = run_checks(cmd);
  bool failed = false;
  nlohmann::json json = nlohmann::json::array();
  for (const auto& c : checks) {
    failed = failed || c.result == Result::fail;
    if (cmd.format == OutputFormat::json) {
      nlohmann::json entry = {{"check", c.name}, {"result", result_name(c.result)}, {"detail", c.detail}};
      if (c.result != Result::pass) entry["fix"] = c.fix;
      json.push_back(entry);
    } else {
      std::cout << result_name(c.result) << " " << c.name << ": " << c.detail
                << (c.result == Result::pass ? "" : "; fix: " + c.fix) << "\n";
    }
  }
  if (cmd.format == OutputFormat::json) std::cout << json.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  return failed ? ExitCode::runtime : ExitCode::ok;
}

}  // namespace portalfs::tools
