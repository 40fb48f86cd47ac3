// SPDX-License-Identifier: MIT
#pragma once

// Errors of the filesystem's ops are values: a positive errno wrapped in Errno (the sign
// libfuse's fuse_reply_err() expects), carried by Result<T> to the one reply (fuse/reply.cpp).
// The mount manager reports failures by exceptions instead (mountmgr/manager.hpp).

#include <cassert>
#include <cerrno>
#include <utility>
#include <variant>

namespace portalfs::common {

/// A positive errno value. Errno{0} is never an error; use Result<void> success instead.
struct Errno {
  int value;
  friend bool operator==(Errno, Errno) = default;
};

/// Either a T or an Errno.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Errno err) : v_(err) { assert(err.value > 0); }

  [[nodiscard]] bool ok() const noexcept { return std::holds_alternative<T>(v_); }
  explicit operator bool() const noexcept { return ok(); }
  [[nodiscard]] int error() const noexcept { return ok() ? 0 : std::get<Errno>(v_).value; }
  [[nodiscard]] Errno err() const noexcept { return std::get<Errno>(v_); }

  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }

 private:
  std::variant<T, Errno> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Errno err) : err_(err.value) { assert(err.value > 0); }
  [[nodiscard]] bool ok() const noexcept { return err_ == 0; }
  explicit operator bool() const noexcept { return ok(); }
  [[nodiscard]] int error() const noexcept { return err_; }
  [[nodiscard]] Errno err() const noexcept { return Errno{err_}; }

 private:
  int err_ = 0;
};

/// A syscall whose only success value is 0: -1 becomes Errno{errno}.
inline Result<void> check_syscall(long rv) {
  if (rv == -1) return Errno{errno ? errno : EIO};
  return {};
}

}  // namespace portalfs::common
