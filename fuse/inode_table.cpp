// SPDX-License-Identifier: MIT
#include "fuse/inode_table.hpp"

#include "fuse/inode_shares.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <utility>

namespace portalfs::fuse {

using common::Errno;
using common::Result;
using common::UniqueFd;

namespace {

// Reads the handle of the file behind `fd`; leaves handle.size 0 when the file system gives
// none that fits (the inode then keeps its fd pinned).
void read_handle(int fd, Handle& handle) {
  struct {
    struct file_handle fh;
    unsigned char bytes[Handle::kMax];
  } buf{};
  buf.fh.handle_bytes = Handle::kMax;
  int mount_id = 0;
  if (::name_to_handle_at(fd, "", &buf.fh, &mount_id, AT_EMPTY_PATH) != 0) return;
  handle.type = buf.fh.handle_type;
  handle.size = static_cast<uint8_t>(buf.fh.handle_bytes);
  std::memcpy(handle.bytes, buf.fh.f_handle, buf.fh.handle_bytes);
}

int open_handle(const Handle& handle, int mount_fd) {
  struct {
    struct file_handle fh;
    unsigned char bytes[Handle::kMax];
  } buf{};
  buf.fh.handle_bytes = handle.size;
  buf.fh.handle_type = handle.type;
  std::memcpy(buf.fh.f_handle, handle.bytes, handle.size);
  return ::open_by_handle_at(mount_fd, &buf.fh, O_PATH | O_NOFOLLOW | O_CLOEXEC);
}

}  // namespace

FdRef::~FdRef() {
  if (table_) table_->unpin(inode_);
}

InodeTable::~InodeTable() {
  std::lock_guard lock(table_mutex_);
  for (auto& [key, head] : by_backing_) {
    Inode* i = head;
    do {
      Inode* next = i->next_sibling;
      delete i;  // closes its fd
      i = next;
    } while (i != head);
  }
}

Inode* InodeTable::in_ring(Inode* head, ViewId view) {
  Inode* i = head;
  do {
    if (i->view == view) return i;
    i = i->next_sibling;
  } while (i != head);
  return nullptr;
}

void InodeTable::relookup_locked(Inode* inode, UniqueFd fd, Fds& to_close) {
  inode->nlookup++;
  std::lock_guard cache(cache_mutex_);
  if (inode->fd) {
    to_close.push_back(std::move(fd));
  } else {
    cache_insert_locked(inode, std::move(fd), to_close);  // its cached fd was evicted
  }
}

Result<Inode*> InodeTable::find_or_insert(ViewId view, const struct stat& st, int fd_in, InodeCharge* pre) {
  UniqueFd fd(fd_in);
  const BackingKey key{st.st_dev, st.st_ino};
  Fds to_close;  // declared before the locks: closed after they are released
  {
    std::lock_guard lock(table_mutex_);
    if (auto it = by_backing_.find(key); it != by_backing_.end()) {
      if (Inode* known = in_ring(it->second, view)) {
        relookup_locked(known, std::move(fd), to_close);
        return known;
      }
    }
  }

  // A new inode: charged to its app first (refused past its share; the fd is closed), its
  // handle read outside the lock (a syscall), then inserted, re-checking for a racing insert
  // of the same key (the loser gives its charge back).
  const auto charge = pre ? pre->release() : shares_ ? shares_->take(view) : InodeShares::Take::uncharged;
  if (charge == InodeShares::Take::refused) return Errno{ENFILE};
  static std::atomic<uint32_t> generations{0};
  auto inode = std::make_unique<Inode>();
  inode->charged = charge == InodeShares::Take::charged;
  inode->generation = generations.fetch_add(1, std::memory_order_relaxed) + 1;
  inode->view = view;
  inode->dev = st.st_dev;
  inode->ino = st.st_ino;
  inode->type = st.st_mode & S_IFMT;
  if (handles_) read_handle(fd.get(), inode->handle);
  inode->nlookup = 1;

  std::lock_guard lock(table_mutex_);  // released before `inode` (a loser) is freed
  auto [it, inserted] = by_backing_.try_emplace(key, inode.get());
  if (!inserted) {
    if (Inode* winner = in_ring(it->second, view)) {
      if (inode->charged) shares_->give(view);
      relookup_locked(winner, std::move(fd), to_close);
      return winner;
    }
    // Join the sibling ring after its head.
    inode->next_sibling = it->second->next_sibling.load();
    it->second->next_sibling = inode.get();
  }
  inode_count_++;
  std::lock_guard cache(cache_mutex_);
  cache_insert_locked(inode.get(), std::move(fd), to_close);
  return inode.release();
}

void InodeTable::forget(Inode* inode, uint64_t n) {
  UniqueFd fd_to_close;
  {
    std::lock_guard lock(table_mutex_);
    if (inode->nlookup > n) {
      inode->nlookup -= n;
      return;
    }
    inode->nlookup = 0;
    // Erase by key (not by a stale iterator), unlinking the inode from its sibling ring.
    const BackingKey key{inode->dev, inode->ino};
    auto it = by_backing_.find(key);
    if (inode->next_sibling == inode) {
      if (it != by_backing_.end()) by_backing_.erase(it);
    } else {
      Inode* prev = inode;
      while (prev->next_sibling != inode) prev = prev->next_sibling;
      prev->next_sibling = inode->next_sibling.load();
      if (it != by_backing_.end() && it->second == inode) it->second = inode->next_sibling;
    }
    inode_count_--;
    if (inode->charged) shares_->give(inode->view);
    std::lock_guard cache(cache_mutex_);
    if (inode->fd) {
      lru_unlink_locked(inode);
      cached_--;
    }
    if (inode->pins > 0) {
      // A handler still uses the fd (it replied, then the kernel forgot): it frees the inode.
      inode->forgotten = true;
      return;
    }
    // Unpublish before closing: nobody can pick the fd up any more.
    fd_to_close = std::move(inode->fd);
  }
  fd_to_close.reset();
  delete inode;
}

Result<FdRef> InodeTable::fd(Inode* inode, int mount_fd) {
  {
    std::lock_guard cache(cache_mutex_);
    if (inode->fd) {
      inode->pins++;
      if (inode->handle.size != 0 && !inode->forgotten && inode != lru_head_) {
        lru_unlink_locked(inode);
        lru_push_front_locked(inode);
      }
      return FdRef(this, inode, inode->fd.get());
    }
  }
  if (inode->handle.size == 0) return Errno{ESTALE};
  UniqueFd fd(open_handle(inode->handle, mount_fd));
  if (!fd) return Errno{errno};
  Fds to_close;  // declared before the lock: closed after it is released
  std::lock_guard cache(cache_mutex_);
  if (inode->fd) {
    to_close.push_back(std::move(fd));  // another thread re-opened it first
  } else if (inode->forgotten) {
    inode->fd = std::move(fd);  // kept out of the cache; closed with the inode by the last unpin
  } else {
    cache_insert_locked(inode, std::move(fd), to_close);
  }
  inode->pins++;
  return FdRef(this, inode, inode->fd.get());
}

void InodeTable::unpin(Inode* inode) {
  {
    std::lock_guard cache(cache_mutex_);
    if (--inode->pins > 0 || !inode->forgotten) return;
  }
  // Forgotten while pinned and this was the last pin: nothing else can reach it any more.
  delete inode;  // closes its fd
}

void InodeTable::opened(Inode* inode) {
  std::lock_guard cache(cache_mutex_);
  inode->opens++;
}

void InodeTable::closed(Inode* inode) {
  std::lock_guard cache(cache_mutex_);
  inode->opens--;
}

std::vector<InodeTable::Sibling> InodeTable::siblings(const Inode* inode) {
  std::vector<Sibling> out;
  if (!has_siblings(inode)) return out;
  std::lock_guard lock(table_mutex_);
  for (Inode* i = inode->next_sibling; i != inode; i = i->next_sibling) {
    out.push_back({i, i->view, i->generation});
  }
  return out;
}

std::vector<InodeTable::Sibling> InodeTable::inodes_of(dev_t dev, ino_t ino, ViewId except) {
  std::vector<Sibling> out;
  std::lock_guard lock(table_mutex_);
  auto it = by_backing_.find(BackingKey{dev, ino});
  if (it == by_backing_.end()) return out;
  Inode* head = it->second;
  Inode* i = head;
  do {
    if (i->view != except) out.push_back({i, i->view, i->generation});
    i = i->next_sibling;
  } while (i != head);
  return out;
}

bool InodeTable::live(const Inode* inode, uint32_t generation, dev_t dev, ino_t ino) {
  std::lock_guard lock(table_mutex_);
  auto it = by_backing_.find(BackingKey{dev, ino});
  if (it == by_backing_.end()) return false;
  Inode* i = it->second;
  do {
    if (i == inode) return i->generation == generation;
    i = i->next_sibling;
  } while (i != it->second);
  return false;
}

std::vector<Inode*> InodeTable::inodes_of(ViewId view) {
  std::vector<Inode*> out;
  std::lock_guard lock(table_mutex_);
  for (auto& [key, head] : by_backing_) {
    Inode* i = head;
    do {
      if (i->view == view) out.push_back(i);
      i = i->next_sibling;
    } while (i != head);
  }
  return out;
}

size_t InodeTable::drop_fds(ViewId view) {
  Fds to_close;
  {
    std::lock_guard lock(table_mutex_);
    std::lock_guard cache(cache_mutex_);
    for (auto& [key, head] : by_backing_) {
      Inode* i = head;
      do {
        if (i->view == view && i->fd && i->pins == 0 && i->opens == 0 && i->handle.size != 0) {
          lru_unlink_locked(i);
          to_close.push_back(std::move(i->fd));  // unpublished here, closed below
          cached_--;
        }
        i = i->next_sibling;
      } while (i != head);
    }
  }
  return to_close.size();
}

InodeTable::Stats InodeTable::stats() {
  std::lock_guard lock(table_mutex_);
  std::lock_guard cache(cache_mutex_);
  return Stats{inode_count_, cached_, capacity_};
}

void InodeTable::cache_insert_locked(Inode* inode, UniqueFd fd, Fds& evicted) {
  inode->fd = std::move(fd);
  cached_++;
  if (inode->handle.size == 0) return;  // pinned for life, not in the LRU
  lru_push_front_locked(inode);
  // Evict from the cold end, skipping fds in use or belonging to open files.
  Inode* victim = lru_tail_;
  while (cached_ > capacity_ && victim) {
    Inode* prev = victim->lru_prev;
    if (victim != inode && victim->pins == 0 && victim->opens == 0) {
      lru_unlink_locked(victim);
      evicted.push_back(std::move(victim->fd));  // unpublished here, closed by the caller
      cached_--;
    }
    victim = prev;
  }
}

void InodeTable::lru_unlink_locked(Inode* inode) {
  if (inode->lru_prev) inode->lru_prev->lru_next = inode->lru_next;
  else if (lru_head_ == inode) lru_head_ = inode->lru_next;
  if (inode->lru_next) inode->lru_next->lru_prev = inode->lru_prev;
  else if (lru_tail_ == inode) lru_tail_ = inode->lru_prev;
  inode->lru_prev = inode->lru_next = nullptr;
}

void InodeTable::lru_push_front_locked(Inode* inode) {
  inode->lru_prev = nullptr;
  inode->lru_next = lru_head_;
  if (lru_head_) lru_head_->lru_prev = inode;
  lru_head_ = inode;
  if (!lru_tail_) lru_tail_ = inode;
}

}  // namespace portalfs::fuse
