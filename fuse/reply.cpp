// SPDX-License-Identifier: MIT
// The one place that answers the kernel: an op's Result becomes its reply (or fuse_reply_err),
// then the invalidations the op collected go to the notifier (filesystem.hpp, "Coherence").
#include "fuse/filesystem_internal.hpp"

namespace portalfs::fuse {

namespace {
// Sends the errno of a failed op; true if there was one.
// Arms the passthrough patch of the open or create reply this thread writes next, sends it
// with `send`, and disarms it (in case the reply never reached the write). Returns what
// `send` returned.
template <class Send>
int with_passthrough(const PassthroughReply& pass, Send send) {
  if (pass.backing > 0) SessionIo::arm_open_reply(pass.backing, pass.direct_io);
  const int rc = send();
  if (pass.backing > 0) SessionIo::arm_open_reply(0, false);
  return rc;
}

template <class T>
bool failed(fuse_req_t req, const Result<T>& r) {
  if (r) return false;
  fuse_reply_err(req, r.error());
  return true;
}
}  // namespace

void Filesystem::reply(fuse_req_t req, Call& call, Result<void> r) {
  fuse_reply_err(req, r.error());
  send_after(call);
}

void Filesystem::reply(fuse_req_t req, Call& call, NoReply) {
  fuse_reply_none(req);
  send_after(call);
}

void Filesystem::reply(fuse_req_t req, Call& call, Result<fuse_entry_param> r) {
  if (failed(req, r)) return;
  if (fuse_reply_entry(req, &r.value()) == -ENOENT && r->ino != 0) {
    // The request is gone (its caller was killed before it was sent, or the connection
    // aborted): the kernel never learnt the entry, nor will it forget it.
    Inode* inode = inode_of(r->ino);
    if (inode->view != kNoView) table_.forget(inode, 1);
  }
  send_after(call);
}

void Filesystem::reply(fuse_req_t req, Call& call, Result<Attr> r) {
  if (failed(req, r)) return;
  fuse_reply_attr(req, &r->st, r->timeout);
  send_after(call);
}

void Filesystem::reply(fuse_req_t req, Call& call, Result<LinkTarget> r) {
  if (failed(req, r)) return;
  fuse_reply_readlink(req, r->target.c_str());
  send_after(call);
}

void Filesystem::reply(fuse_req_t req, Call& call, Result<Opened> r) {
  if (failed(req, r)) return;
  // An interrupted open is not delivered, and the kernel will not release what it never had.
  const int rc = with_passthrough(r->passthrough, [&] { return fuse_reply_open(req, &r->fi); });
  if (rc == -ENOENT && r->fi.fh != 0) {
    close_handle(files_.take(r->fi.fh));
  }
  send_after(call);
}

void Filesystem::reply(fuse_req_t req, Call& call, Result<OpenedDir> r) {
  if (failed(req, r)) return;
  // As for a file (above): an interrupted opendir is never released.
  if (fuse_reply_open(req, &r->fi) == -ENOENT && r->fi.fh != 0) dirs_.take(r->fi.fh);
  send_after(call);
}

void Filesystem::reply(fuse_req_t req, Call& call, Result<Created> r) {
  if (failed(req, r)) return;
  const int rc = with_passthrough(r->passthrough,
                                  [&] { return fuse_reply_create(req, &r->entry, &r->fi); });
  if (rc == -ENOENT) {
    // As for an entry (above): the kernel will not forget what it never learnt.
    close_handle(files_.take(r->fi.fh));
    table_.forget(reinterpret_cast<Inode*>(r->entry.ino), 1);
  }
  send_after(call);
}

void Filesystem::reply(fuse_req_t req, Call& call, Result<FileData> r) {
  if (failed(req, r)) return;
  fuse_bufvec buf{};
  buf.count = 1;
  buf.buf[0].size = r->size;
  buf.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
  buf.buf[0].fd = r->fd;
  buf.buf[0].pos = r->off;
  fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
  send_after(call);
}

void Filesystem::reply(fuse_req_t req, Call& call, Result<Written> r) {
  if (failed(req, r)) return;
  fuse_reply_write(req, r->size);
  send_after(call);
}

void Filesystem::reply(fuse_req_t req, Call& call, Result<Offset> r) {
  if (failed(req, r)) return;
  fuse_reply_lseek(req, r->off);
  send_after(call);
}

void Filesystem::reply(fuse_req_t req, Call& call, Result<Bytes> r) {
  if (failed(req, r)) return;
  fuse_reply_buf(req, r->data.data(), r->data.size());
  send_after(call);
}

void Filesystem::reply(fuse_req_t req, Call& call, Result<struct statvfs> r) {
  if (failed(req, r)) return;
  fuse_reply_statfs(req, &r.value());
  send_after(call);
}

void Filesystem::reply(fuse_req_t req, Call& call, Result<Xattr> r) {
  if (failed(req, r)) return;
  if (r->size_only) fuse_reply_xattr(req, r->size);
  else fuse_reply_buf(req, r->data.data(), r->data.size());
  send_after(call);
}

}  // namespace portalfs::fuse
