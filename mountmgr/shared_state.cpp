// SPDX-License-Identifier: MIT
#include "mountmgr/shared_state.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <thread>

#include <nlohmann/json.hpp>

#include "mountmgr/manager.hpp"  // StateError

namespace portalfs::mountmgr {

namespace {
using common::UniqueFd;
using namespace std::chrono_literals;

constexpr const char* kDir = ".portalfs-cluster";
constexpr const char* kTemp = "state.json.tmp";
constexpr const char* kLockName = "lock";
constexpr auto kLockPatience = 30s;
constexpr uint64_t kKeep = 16;  // documents kept: the newest and the 15 before it

[[noreturn]] void fail(const std::string& what, int err) { throw StateError(what + ": " + std::strerror(err)); }

// The whole of a small file, or nullopt when it does not exist.
std::optional<std::string> slurp(int dir_fd, const char* name) {
  UniqueFd fd(::openat(dir_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return std::nullopt;
    return std::string();  // unreadable: parsed as bad below
  }
  std::string text;
  char buf[65536];
  for (ssize_t n; (n = ::read(fd.get(), buf, sizeof(buf))) > 0;) text.append(buf, static_cast<size_t>(n));
  return text;
}
}  // namespace

SharedState::Lock::~Lock() {
  if (fd_ < 0) return;
  struct flock fl {};
  fl.l_type = F_UNLCK;
  fl.l_whence = SEEK_SET;
  ::fcntl(fd_, F_SETLK, &fl);
}

SharedState::SharedState(const std::string& storage_root) : dir_(storage_root + "/" + kDir) {
  if (::mkdir(dir_.c_str(), 0700) != 0 && errno != EEXIST) fail(dir_ + ": cannot create", errno);
  dir_fd_.reset(::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir_fd_) fail(dir_ + ": cannot open", errno);
  lock_fd_.reset(::openat(dir_fd_.get(), kLockName, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!lock_fd_) fail(dir_ + "/" + kLockName + ": cannot open", errno);
}

SharedState::Lock SharedState::lock() {
  // F_SETLK in a loop rather than F_SETLKW: a node that hangs holding the lock must not hang
  // every other node's requests forever.
  const auto deadline = std::chrono::steady_clock::now() + kLockPatience;
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  while (::fcntl(lock_fd_.get(), F_SETLK, &fl) != 0) {
    if (errno != EAGAIN && errno != EACCES && errno != EINTR) fail(dir_ + "/" + kLockName + ": cannot lock", errno);
    if (std::chrono::steady_clock::now() > deadline) {
      throw StateError(dir_ + "/" + kLockName + ": another node has held the shared state lock for 30 s");
    }
    std::this_thread::sleep_for(5ms);
  }
  return Lock(lock_fd_.get());
}

std::string SharedState::name_of(uint64_t generation) { return "state." + std::to_string(generation) + ".json"; }

bool SharedState::exists(uint64_t generation) const {
  struct stat st {};
  return ::fstatat(dir_fd_.get(), name_of(generation).c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
}

uint64_t SharedState::newest_listed() const {
  UniqueFd fd(::openat(dir_fd_.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  DIR* dir = fd ? ::fdopendir(fd.release()) : nullptr;
  if (!dir) return 0;
  uint64_t newest = 0;
  while (const dirent* e = ::readdir(dir)) {
    unsigned long long g = 0;
    char tail[8] = {};
    if (std::sscanf(e->d_name, "state.%llu%7s", &g, tail) == 2 && std::strcmp(tail, ".json") == 0) {
      newest = std::max<uint64_t>(newest, g);
    }
  }
  ::closedir(dir);
  return newest;
}

uint64_t SharedState::generation() const {
  // The usual case costs one lookup: is there a document after the last one seen? (GlusterFS's
  // client caches no negative lookups by default, so a new one is found at once.) A node that
  // was away long enough for its generation to be pruned lists the directory instead.
  uint64_t g = last_seen_;
  if (g == 0 || !exists(g)) g = newest_listed();
  while (exists(g + 1)) ++g;
  last_seen_ = g;
  return g;
}

std::optional<SharedState::Snapshot> SharedState::read() const {
  const uint64_t g = generation();
  if (g == 0) return std::nullopt;
  const std::string name = dir_ + "/" + name_of(g);
  auto text = slurp(dir_fd_.get(), name_of(g).c_str());
  try {
    if (!text) throw std::runtime_error("it went away while read");
    const auto doc = nlohmann::json::parse(*text);
    Snapshot s;
    s.generation = doc.at("generation").get<uint64_t>();
    if (s.generation != g) throw std::runtime_error("it says generation " + std::to_string(s.generation));
    s.state = state_from_json(doc.at("state"));
    return s;
  } catch (const std::exception& e) {
    throw StateError(name + ": not a shared state document (" + e.what() + "); move it away to go back to the one before");
  }
}

void SharedState::write(uint64_t generation, const State& state) {
  State shared = merge(State{}, state);
  const std::string text = nlohmann::json{{"generation", generation}, {"state", to_json(shared)}}.dump(1) + "\n";
  const std::string tmp = std::string(kTemp) + "." + std::to_string(::getpid());
  UniqueFd fd(::openat(dir_fd_.get(), tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd) fail(dir_ + "/" + tmp + ": cannot create", errno);
  if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) fail(dir_ + "/" + tmp + ": cannot write", errno);
  if (::fsync(fd.get()) != 0) fail(dir_ + "/" + tmp + ": cannot sync", errno);
  // Published under its generation's own name, by link: it never replaces, so even without the
  // lock two nodes can't both write generation N (compare-and-swap by name). The document is
  // immutable from here on, so no client can hold a stale copy of it.
  const int linked = ::linkat(dir_fd_.get(), tmp.c_str(), dir_fd_.get(), name_of(generation).c_str(), 0);
  const int err = errno;
  ::unlinkat(dir_fd_.get(), tmp.c_str(), 0);
  if (linked != 0 && err == EEXIST) {
    throw StateError(dir_ + "/" + name_of(generation) + ": another node wrote this generation first; try again");
  }
  if (linked != 0) fail(dir_ + "/" + name_of(generation) + ": cannot publish", err);
  ::fsync(dir_fd_.get());
  last_seen_ = generation;
  // Older documents go, all but the last kKeep (a node that reads one as it goes retries).
  if (generation > kKeep) ::unlinkat(dir_fd_.get(), name_of(generation - kKeep).c_str(), 0);
}

State merge(const State& local, const State& shared) {
  State out = local;
  out.apps = shared.apps;
  out.shares = shared.shares;
  out.share_trash = shared.share_trash;
  out.quotas = shared.quotas;
  return out;
}

}  // namespace portalfs::mountmgr
