// SPDX-License-Identifier: MIT
#include "tools/ctl_audit.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <thread>

#include "common/audit.hpp"
#include "common/unique_fd.hpp"

namespace portalfs::tools {

namespace {

namespace fs = std::filesystem;
using common::AuditRecord;
using Clock = std::chrono::system_clock;

struct Query {
  std::string dir;  // <state-dir>/audit
  std::string app;  // "" = every app
  std::optional<Clock::time_point> since;
  bool json = false;
};

// One line of output: the record's JSON line as written, or a text line:
//   TIME APP VIEW OP PATH [-> TO] RESULT [(DETAIL)]
std::string format(const AuditRecord& r, bool json) {
  if (json) {
    std::string line = common::audit_line(r);
    line.pop_back();  // its "\n"
    return line;
  }
  std::string line = common::format_time(r.time) + " " + (r.app.empty() ? "-" : r.app) + " " +
                     (r.view.empty() ? "-" : r.view) + " " + r.op;
  if (!r.path.empty()) line += " " + r.path;
  if (!r.to.empty()) line += " -> " + r.to;
  line += " " + r.result;
  if (!r.detail.empty()) line += " (" + r.detail + ")";
  return line;
}

// Lines that are not records (a line cut by a crash, a hand edit) are skipped and counted.
struct Parser {
  size_t skipped = 0;
  std::optional<AuditRecord> parse(const std::string& line) {
    if (line.empty()) return std::nullopt;
    try {
      return common::audit_record_from_json(nlohmann::json::parse(line));
    } catch (const std::exception&) {
      ++skipped;
      return std::nullopt;
    }
  }
};

// The files of one app ("x.jsonl"), oldest first: x.jsonl.N ... x.jsonl.1, x.jsonl.
std::vector<std::string> files_of(const std::string& dir, const std::string& base) {
  std::map<int, std::string, std::greater<>> rotated;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename();
    if (name.rfind(base + ".", 0) != 0) continue;
    const std::string n = name.substr(base.size() + 1);
    if (!n.empty() && n.find_first_not_of("0123456789") == std::string::npos && n.size() < 6) {
      rotated[std::stoi(n)] = dir + "/" + name;
    }
  }
  std::vector<std::string> out;
  for (const auto& [n, path] : rotated) out.push_back(path);
  if (fs::exists(dir + "/" + base, ec)) out.push_back(dir + "/" + base);
  return out;
}

// Every "<app>.jsonl" below the audit directory.
std::vector<std::string> all_bases(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename();
    if (name.size() > 6 && name.ends_with(".jsonl")) out.push_back(name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// A file read from an offset on, line by line (a partial last line waits for its end).
struct Tail {
  std::string path;
  common::UniqueFd fd;
  ino_t ino = 0;
  std::string partial;

  // Opens the file (from its start); false when it is not there.
  bool open() {
    fd.reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    struct stat st {};
    if (!fd || ::fstat(fd.get(), &st) != 0) return false;
    ino = st.st_ino;
    partial.clear();
    return true;
  }
  // The complete lines written since the last call.
  std::vector<std::string> read_lines() {
    std::vector<std::string> lines;
    if (!fd) return lines;
    char buf[65536];
    ssize_t n;
    while ((n = ::read(fd.get(), buf, sizeof(buf))) > 0) partial.append(buf, static_cast<size_t>(n));
    size_t start = 0, nl;
    while ((nl = partial.find('\n', start)) != std::string::npos) {
      lines.push_back(partial.substr(start, nl - start));
      start = nl + 1;
    }
    partial.erase(0, start);
    return lines;
  }
  // Whether the name now leads to another file (rotated) or to none.
  [[nodiscard]] bool replaced() const {
    struct stat st {};
    return ::stat(path.c_str(), &st) != 0 || st.st_ino != ino;
  }
};

bool wanted(const Query& q, const AuditRecord& r) { return !q.since || r.time >= *q.since; }

// Everything there is now, oldest first. Returns the current files, read to their ends, for
// --follow to go on from.
std::vector<Tail> print_existing(const Query& q, Parser& parser) {
  const std::vector<std::string> bases = q.app.empty() ? all_bases(q.dir)
                                                       : std::vector<std::string>{common::audit_file_name(q.app)};
  std::vector<AuditRecord> records;
  std::vector<Tail> tails;
  for (const auto& base : bases) {
    for (const auto& path : files_of(q.dir, base)) {
      Tail t{path, {}, 0, {}};
      if (!t.open()) continue;
      for (const auto& line : t.read_lines()) {
        if (auto r = parser.parse(line); r && wanted(q, *r)) records.push_back(std::move(*r));
      }
      if (path == q.dir + "/" + base) tails.push_back(std::move(t));
    }
    if (tails.empty() || tails.back().path != q.dir + "/" + base) tails.push_back(Tail{q.dir + "/" + base, {}, 0, {}});
  }
  // One app's files are in order already; several apps' are merged by time (stable: the
  // order within a file stays).
  if (bases.size() > 1) {
    std::stable_sort(records.begin(), records.end(),
                     [](const AuditRecord& a, const AuditRecord& b) { return a.time < b.time; });
  }
  for (const auto& r : records) std::cout << format(r, q.json) << '\n';
  std::cout << std::flush;
  return tails;
}

[[noreturn]] void follow(const Query& q, std::vector<Tail> tails, Parser& parser) {
  for (;;) {
    if (q.app.empty()) {  // an app installed meanwhile has a file of its own
      for (const auto& base : all_bases(q.dir)) {
        const std::string path = q.dir + "/" + base;
        if (std::none_of(tails.begin(), tails.end(), [&](const Tail& t) { return t.path == path; })) {
          tails.push_back(Tail{path, {}, 0, {}});
        }
      }
    }
    for (auto& t : tails) {
      std::vector<std::string> lines = t.read_lines();
      if (t.replaced()) {  // rotated: what was left is read above; the new file from its start
        if (t.open()) {
          auto more = t.read_lines();
          lines.insert(lines.end(), more.begin(), more.end());
        }
      }
      for (const auto& line : lines) {
        if (auto r = parser.parse(line); r && wanted(q, *r)) std::cout << format(*r, q.json) << '\n';
      }
    }
    std::cout << std::flush;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

}  // namespace

ExitCode run_audit(const CtlCommand& cmd) {
  Query q;
  q.dir = cmd.args.at("state_dir").get<std::string>() + "/audit";
  q.app = cmd.args.value("app", std::string());
  if (cmd.args.contains("since")) q.since = common::parse_since(cmd.args["since"].get<std::string>(), Clock::now());
  q.json = cmd.format == OutputFormat::json;
  std::error_code ec;
  if (!fs::is_directory(q.dir, ec)) {
    std::cerr << "portalctl: audit: no audit trail in " << q.dir
              << "; give portalfsd's --state-dir with --state-dir, and check portalfsd runs with --audit on\n";
    return ExitCode::runtime;
  }
  if (!q.app.empty() && files_of(q.dir, common::audit_file_name(q.app)).empty() && !cmd.args.value("follow", false)) {
    std::cerr << "portalctl: audit: no records of app \"" << q.app << "\" in " << q.dir
              << " (portalctl app list shows the apps)\n";
    return ExitCode::runtime;
  }
  Parser parser;
  auto tails = print_existing(q, parser);
  if (parser.skipped > 0) {
    std::cerr << "portalctl: audit: skipped " << parser.skipped << " line(s) that are not audit records\n";
  }
  if (cmd.args.value("follow", false)) follow(q, std::move(tails), parser);
  return ExitCode::ok;
}

}  // namespace portalfs::tools
