// SPDX-License-Identifier: MIT
// The libfuse op table. Each entry is a trampoline that finds the Filesystem through
// fuse_req_userdata(), calls its op with a Call made from the request and sends the op's
// Result as the one reply (reply.cpp). The one try/catch of the filesystem lives here, so no
// exception ever crosses into libfuse (an op that throws is answered EIO, with a log line).
#include <exception>
#include <optional>
#include <string>

#include "common/log.hpp"
#include "fuse/filesystem.hpp"

namespace portalfs::fuse {
namespace {

int error_of(const NoReply&) { return 0; }
template <class T>
int error_of(const Result<T>& r) {
  return r.error();
}

template <auto Member, typename... Args>
void call(fuse_req_t req, Args... args) {
  auto* fs = static_cast<Filesystem*>(fuse_req_userdata(req));
  const fuse_ctx* ctx = fuse_req_ctx(req);
  const pid_t echo = fs->echo_tid();
  Call c{ctx->uid, ctx->gid, echo != 0 && ctx->pid == echo, {}};
  c.pid = ctx->pid;
  std::optional<decltype((fs->*Member)(c, args...))> result;
  Filesystem::Audited audit(*fs, c.echo);  // what the op does and is refused: recorded before the reply
  try {
    result.emplace((fs->*Member)(c, args...));
    audit.done(error_of(*result));
  } catch (const std::exception& e) {
    common::log(common::LogLevel::error, std::string("request failed: ") + e.what(), audit.fields(EIO));
    return (void)fuse_reply_err(req, EIO);
  } catch (...) {
    common::log(common::LogLevel::error, "request failed with an unknown exception", audit.fields(EIO));
    return (void)fuse_reply_err(req, EIO);
  }
  // Answered exactly once: what the reply's own clean-up throws is logged, never answered again.
  try {
    fs->reply(req, c, std::move(*result));
  } catch (const std::exception& e) {
    common::log(common::LogLevel::error, std::string("after a reply: ") + e.what(), audit.fields(0));
  }
}

void init(void* userdata, fuse_conn_info* conn) { static_cast<Filesystem*>(userdata)->init(conn); }

void readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  call<&Filesystem::readdir>(req, ino, size, off, fi, false);
}
void readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  call<&Filesystem::readdir>(req, ino, size, off, fi, true);
}

// clang-format off
const fuse_lowlevel_ops kOps = {
    .init            = init,
    .destroy         = nullptr,
    .lookup          = call<&Filesystem::lookup, fuse_ino_t, const char*>,
    .forget          = call<&Filesystem::forget, fuse_ino_t, uint64_t>,
    .getattr         = call<&Filesystem::getattr, fuse_ino_t, fuse_file_info*>,
    .setattr         = call<&Filesystem::setattr, fuse_ino_t, struct stat*, int, fuse_file_info*>,
    .readlink        = call<&Filesystem::readlink, fuse_ino_t>,
    .mknod           = call<&Filesystem::mknod, fuse_ino_t, const char*, mode_t, dev_t>,
    .mkdir           = call<&Filesystem::mkdir, fuse_ino_t, const char*, mode_t>,
    .unlink          = call<&Filesystem::unlink, fuse_ino_t, const char*>,
    .rmdir           = call<&Filesystem::rmdir, fuse_ino_t, const char*>,
    .symlink         = call<&Filesystem::symlink, const char*, fuse_ino_t, const char*>,
    .rename          = call<&Filesystem::rename, fuse_ino_t, const char*, fuse_ino_t, const char*, unsigned int>,
    .link            = call<&Filesystem::link, fuse_ino_t, fuse_ino_t, const char*>,
    .open            = call<&Filesystem::open, fuse_ino_t, fuse_file_info*>,
    .read            = call<&Filesystem::read, fuse_ino_t, size_t, off_t, fuse_file_info*>,
    .write           = nullptr,  // write_buf below
    .flush           = call<&Filesystem::flush, fuse_ino_t, fuse_file_info*>,
    .release         = call<&Filesystem::release, fuse_ino_t, fuse_file_info*>,
    .fsync           = call<&Filesystem::fsync, fuse_ino_t, int, fuse_file_info*>,
    .opendir         = call<&Filesystem::opendir, fuse_ino_t, fuse_file_info*>,
    .readdir         = readdir,
    .releasedir      = call<&Filesystem::releasedir, fuse_ino_t, fuse_file_info*>,
    .fsyncdir        = call<&Filesystem::fsyncdir, fuse_ino_t, int, fuse_file_info*>,
    .statfs          = call<&Filesystem::statfs, fuse_ino_t>,
    .setxattr        = call<&Filesystem::setxattr, fuse_ino_t, const char*, const char*, size_t, int>,
    .getxattr        = call<&Filesystem::getxattr, fuse_ino_t, const char*, size_t>,
    .listxattr       = call<&Filesystem::listxattr, fuse_ino_t, size_t>,
    .removexattr     = call<&Filesystem::removexattr, fuse_ino_t, const char*>,
    .access          = call<&Filesystem::access, fuse_ino_t, int>,
    .create          = call<&Filesystem::create, fuse_ino_t, const char*, mode_t, fuse_file_info*>,
    .getlk           = nullptr,  // locks stay the kernel's
    .setlk           = nullptr,
    .bmap            = nullptr,
    .ioctl           = nullptr,
    .poll            = nullptr,
    .write_buf       = call<&Filesystem::write_buf, fuse_ino_t, fuse_bufvec*, off_t, fuse_file_info*>,
    .retrieve_reply  = nullptr,
    .forget_multi    = call<&Filesystem::forget_multi, size_t, fuse_forget_data*>,
    .flock           = nullptr,
    .fallocate       = call<&Filesystem::fallocate, fuse_ino_t, int, off_t, off_t, fuse_file_info*>,
    .readdirplus     = readdirplus,
    .copy_file_range = call<&Filesystem::copy_file_range, fuse_ino_t, off_t, fuse_file_info*, fuse_ino_t, off_t, fuse_file_info*, size_t, int>,
    .lseek           = call<&Filesystem::lseek, fuse_ino_t, off_t, int, fuse_file_info*>,
};
// clang-format on

}  // namespace

const fuse_lowlevel_ops& Filesystem::ops() { return kOps; }

}  // namespace portalfs::fuse
