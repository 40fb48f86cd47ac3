// SPDX-License-Identifier: MIT
#include "common/audit.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>
#include <ctime>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "common/log.hpp"

namespace portalfs::common {

std::string errno_name(int err) {
  // strerrorname_np (glibc 2.32+) names them all without a table of our own.
  const char* name = ::strerrorname_np(err);
  return name ? name : "E" + std::to_string(err);
}

std::string format_time(std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  const auto ms = duration_cast<milliseconds>(t.time_since_epoch()).count();
  const time_t secs = static_cast<time_t>(ms / 1000);
  struct tm tm {};
  ::gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms % 1000));
  return buf;
}

std::chrono::system_clock::time_point parse_time(const std::string& text) {
  // YYYY-MM-DDTHH:MM:SS[.mmm][Z]: UTC, as the lines write it.
  struct tm tm {};
  const char* end = ::strptime(text.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (!end) throw std::invalid_argument("not a time: \"" + text + "\"");
  long ms = 0;
  if (*end == '.') {
    char* after = nullptr;
    const long frac = std::strtol(end + 1, &after, 10);
    const long digits = after - (end + 1);
    if (digits < 1 || digits > 3) throw std::invalid_argument("not a time: \"" + text + "\"");
    ms = frac * (digits == 1 ? 100 : digits == 2 ? 10 : 1);
    end = after;
  }
  if (*end == 'Z') ++end;
  if (*end != '\0') throw std::invalid_argument("not a time: \"" + text + "\"");
  const time_t secs = ::timegm(&tm);
  return std::chrono::system_clock::from_time_t(secs) + std::chrono::milliseconds(ms);
}

std::optional<std::chrono::system_clock::time_point> parse_since(
    const std::string& text, std::chrono::system_clock::time_point now) {
  if (text.size() >= 2 && text.find_first_not_of("0123456789") == text.size() - 1) {
    const long long n = std::stoll(text.substr(0, text.size() - 1));
    const std::map<char, long long> seconds = {{'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}};
    auto unit = seconds.find(text.back());
    if (unit == seconds.end() || text.size() > 10) return std::nullopt;
    return now - std::chrono::seconds(n * unit->second);
  }
  try {
    return parse_time(text);
  } catch (const std::invalid_argument&) {
    return std::nullopt;
  }
}

AuditRecord audit_record_from_json(const nlohmann::json& j) {
  AuditRecord r;
  r.time = parse_time(j.at("time").get<std::string>());
  auto get = [&j](const char* key) { return j.contains(key) ? j.at(key).get<std::string>() : std::string(); };
  r.app = get("app");
  r.view = get("view");
  r.op = get("op");
  r.path = get("path");
  r.to = get("to");
  r.result = get("result");
  r.detail = get("detail");
  return r;
}

std::string audit_file_name(const std::string& app) {
  // App ids are made safe by policy (no "/", no control characters); "." and ".." can't be
  // ids either, but a file name is not the place to trust that.
  if (app.empty() || app == "." || app == ".." || app.find('/') != std::string::npos) return "_platform.jsonl";
  return app + ".jsonl";
}

AuditLog::AuditLog(std::string dir, Options options) : dir_(std::move(dir)), options_(options) {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) throw std::runtime_error("cannot create the audit directory " + dir_ + ": " + ec.message());
  ::chmod(dir_.c_str(), 0700);
  thread_ = std::thread([this] { run(); });
}

AuditLog::~AuditLog() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    wake_.notify_all();
  }
  thread_.join();  // run() writes what is queued before it returns
  for (auto& [app, f] : files_) ::close(f.fd);
}

void AuditLog::post(AuditRecord record) noexcept {
  std::lock_guard lock(mutex_);
  try {
    if (queue_.size() >= options_.queue) {
      ++dropped_[record.app];
    } else {
      queue_.push_back(std::move(record));
      ++posted_;
    }
    // No wake-up per record (a futex call, and a thread switch on a busy machine, for every
    // create): the writer comes by itself every kPeriod, or once a batch is worth a write.
    if (queue_.size() == std::min(kWakeAt, options_.queue)) wake_.notify_one();
  } catch (...) {  // out of memory: counted if even that works, never thrown at a worker
  }
}

void AuditLog::flush() {
  std::unique_lock lock(mutex_);
  const uint64_t target = posted_;
  ++flushing_;
  wake_.notify_one();
  idle_.wait(lock, [&] { return written_ >= target && dropped_.empty(); });
  --flushing_;
}

void AuditLog::run() {
  std::vector<AuditRecord> batch;
  std::map<std::string, uint64_t> dropped;
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait_for(lock, kPeriod, [this] {
      const bool waiting = !queue_.empty() || !dropped_.empty();
      return stopping_ || queue_.size() >= std::min(kWakeAt, options_.queue) || (flushing_ > 0 && waiting);
    });
    if (queue_.empty() && dropped_.empty()) {
      if (stopping_) break;  // everything written
      // A quiet period: hold no fd until the next record.
      lock.unlock();
      for (auto& [name, file] : files_) {
        if (file.fd >= 0) ::close(std::exchange(file.fd, -1));
      }
      lock.lock();
      continue;
    }
    batch.swap(queue_);
    dropped.swap(dropped_);
    lock.unlock();
    write_batch(batch, dropped);
    lock.lock();
    written_ += batch.size();
    batch.clear();
    dropped.clear();
    idle_.notify_all();
  }
}

namespace {

// `text` as a JSON string. Paths are nearly always plain printable ASCII: copied as they are;
// anything else (quotes, controls, UTF-8, invalid bytes) goes through nlohmann, which
// replaces invalid UTF-8 with U+FFFD.
void append_json_string(std::string& out, const std::string& text) {
  const bool plain = std::all_of(text.begin(), text.end(), [](char c) {
    return c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
  });
  if (plain) {
    out += '"';
    out += text;
    out += '"';
  } else {
    out += nlohmann::json(text).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
}

}  // namespace

std::string audit_line(const AuditRecord& r) {
  // One JSON object, its keys sorted as nlohmann writes them, empty fields left out; by
  // hand because the writer formats every record of every app (the bench's creates) and
  // building a json object per record costs more than the write.
  std::string line = "{";
  auto put = [&line](const char* key, const std::string& value) {
    if (value.empty()) return;
    if (line.size() > 1) line += ',';
    line += '"';
    line += key;
    line += "\":";
    append_json_string(line, value);
  };
  put("app", r.app);
  put("detail", r.detail);
  put("op", r.op);
  put("path", r.path);
  put("result", r.result);
  put("time", format_time(r.time));
  put("to", r.to);
  put("view", r.view);
  line += "}\n";
  return line;
}

void AuditLog::write_batch(std::vector<AuditRecord>& batch, std::map<std::string, uint64_t>& dropped) {
  for (const auto& r : batch) add_line(r.app, audit_line(r));
  // After the batch: the dropped ones came after what was queued.
  for (const auto& [app, count] : dropped) {
    AuditRecord r;
    r.app = app;
    r.op = "dropped";
    r.result = "ok";
    r.detail = std::to_string(count) + " record(s) dropped: the audit queue was full";
    add_line(app, audit_line(r));
  }
  // Write, and keep open only the files of apps that are busy: with hundreds of apps, one fd
  // each would be a daemon fd per app for good (the fd budget counts none of them).
  constexpr size_t kKeptOpen = 16;
  size_t open = 0;
  for (auto& [name, file] : files_) open += file.fd >= 0;
  for (auto& [name, file] : files_) {
    const bool written = !file.pending.empty();
    write_pending(file);
    if (!written && open > kKeptOpen && file.fd >= 0) {
      ::close(file.fd);
      file.fd = -1;
      --open;
    }
  }
}

AuditLog::File& AuditLog::open_file(const std::string& name) {
  File& f = files_[name];
  if (f.fd >= 0) return f;
  const std::string path = dir_ + "/" + name;
  f.fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  struct stat st {};
  f.size = f.fd >= 0 && ::fstat(f.fd, &st) == 0 ? static_cast<size_t>(st.st_size) : 0;
  if (f.fd < 0) {
    log_once(LogLevel::error, "audit:" + path,
             "cannot write the audit trail " + path + ": " + std::strerror(errno) +
                 "; its records are lost until the state directory is writable again");
  }
  return f;
}

void AuditLog::rotate(const std::string& name, File& file) {
  // <app>.jsonl.(keep-1) -> .keep, ..., <app>.jsonl -> .1; the oldest is overwritten.
  const std::string base = dir_ + "/" + name;
  ::close(file.fd);
  file.fd = -1;
  for (unsigned i = options_.keep; i > 1; --i) {
    ::rename((base + "." + std::to_string(i - 1)).c_str(), (base + "." + std::to_string(i)).c_str());
  }
  if (options_.keep > 0) ::rename(base.c_str(), (base + ".1").c_str());
  else ::unlink(base.c_str());
}

void AuditLog::add_line(const std::string& app, const std::string& line) {
  const std::string name = audit_file_name(app);
  File* f = &open_file(name);
  const size_t size = f->size + f->pending.size();
  if (size > 0 && size + line.size() > options_.max_bytes) {
    write_pending(*f);
    if (f->fd >= 0) rotate(name, *f);
    f = &open_file(name);
  }
  f->pending += line;
}

void AuditLog::write_pending(File& file) {
  if (file.pending.empty()) return;
  if (file.fd < 0) {  // lost (logged by open_file); the next line tries to open it again
    file.pending.clear();
    return;
  }
  // O_APPEND, whole lines per write: a reader never sees half a line of a finished write.
  const ssize_t n = ::write(file.fd, file.pending.data(), file.pending.size());
  if (n > 0) file.size += static_cast<size_t>(n);
  file.pending.clear();
}

}  // namespace portalfs::common
