// SPDX-License-Identifier: MIT
// portalfs_bench_report: turns bench/run's raw measurements (one JSON object a line:
// section, row, unit, target, rep, value, and "better":"lower" for costs) into the table it
// prints and the JSON it writes with --out. Each figure is the median of its repetitions; a
// ratio is always a speed ratio to the plain directory (above 1: faster than plain), and the
// issue's targets (#6) are checked for the portalfs columns (targets named pfs-*).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace {

using nlohmann::json;
constexpr const char* kProg = "portalfs_bench_report";

// The targets: a row's portalfs figure against a reference target's.
struct Goal {
  std::string ref;  // "plain", "bindfs", or "" for an absolute bound
  double bound;     // minimum ratio, or the absolute maximum when ref is ""
};
const std::map<std::string, Goal>& goals() {
  static const std::map<std::string, Goal> g = {
      {"seqwrite-1M", {"plain", 0.5}},         {"seqread-1M-warm", {"plain", 0.9}},
      {"randread-4k-warm-j1", {"plain", 0.9}}, {"randwrite-4k", {"plain", 0.5}},
      {"meta-create", {"bindfs", 2.0}},        {"meta-stat-cold", {"bindfs", 2.0}},
      {"meta-readdir", {"plain", 0.5}},        {"tree-untar", {"bindfs", 2.0}},
      {"tree-du-warm", {"plain", 0.5}},        {"mem-per-inode", {"", 300.0}},
  };
  return g;
}

struct Row {
  std::string section, name, unit;
  bool lower_better = false;
  std::map<std::string, std::vector<double>> raw;  // target -> every repetition
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::string fmt(double v) {
  char buf[32];
  if (std::fabs(v) >= 100 || v == std::floor(v)) {
    std::snprintf(buf, sizeof(buf), "%.0f", v);
  } else {
    std::snprintf(buf, sizeof(buf), "%.3g", v);
  }
  return buf;
}

std::string fmt_ratio(double r) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2fx", r);
  return buf;
}

/// Speed ratio of a to b (both medians of the same row).
double speed_ratio(const Row& row, double a, double b) {
  if (row.lower_better) return a > 0 ? b / a : 0;
  return b > 0 ? a / b : 0;
}

void print_table(const std::vector<std::vector<std::string>>& cells) {
  std::vector<size_t> width;
  for (const auto& line : cells) {
    width.resize(std::max(width.size(), line.size()));
    for (size_t i = 0; i < line.size(); ++i) width[i] = std::max(width[i], line[i].size());
  }
  for (size_t l = 0; l < cells.size(); ++l) {
    std::string out;
    for (size_t i = 0; i < cells[l].size(); ++i) {
      const auto& c = cells[l][i];
      std::string pad(width[i] - c.size(), ' ');
      out += i < 2 ? c + pad : pad + c;  // names left, figures right
      if (i + 1 < cells[l].size()) out += "  ";
    }
    std::cout << out << "\n";
    if (l == 0) {
      size_t total = 0;
      for (size_t w : width) total += w + 2;
      std::cout << std::string(total - 2, '-') << "\n";
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string in_path, out_path, meta_path;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if ((a == "--out" || a == "--meta") && i + 1 < argc) {
      (a == "--out" ? out_path : meta_path) = argv[++i];
    } else if (!a.starts_with("--") && in_path.empty()) {
      in_path = a;
    } else {
      std::cerr << kProg << ": unexpected argument \"" << a
                << "\"; usage: " << kProg << " RAW.jsonl [--meta FILE.json] [--out FILE.json]\n";
      return 2;
    }
  }
  if (in_path.empty()) {
    std::cerr << kProg << ": missing RAW.jsonl; usage: " << kProg
              << " RAW.jsonl [--meta FILE.json] [--out FILE.json]\n";
    return 2;
  }
  std::ifstream in(in_path);
  if (!in) {
    std::cerr << kProg << ": cannot read " << in_path << "\n";
    return 2;
  }

  std::vector<Row> rows;  // in the order measured
  std::vector<std::string> targets;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.empty()) continue;
    json j;
    try {
      j = json::parse(line);
      auto name = j.at("row").get<std::string>();
      auto target = j.at("target").get<std::string>();
      auto it = std::find_if(rows.begin(), rows.end(), [&](const Row& r) { return r.name == name; });
      if (it == rows.end()) {
        rows.push_back({j.at("section").get<std::string>(), name, j.at("unit").get<std::string>(),
                        j.value("better", std::string("higher")) == "lower", {}});
        it = rows.end() - 1;
      }
      it->raw[target].push_back(j.at("value").get<double>());
      if (std::find(targets.begin(), targets.end(), target) == targets.end()) targets.push_back(target);
    } catch (const json::exception& e) {
      std::cerr << kProg << ": " << in_path << ":" << n << ": " << e.what() << "\n";
      return 2;
    }
  }

  json out = {{"meta", json::object()}, {"targets", targets}, {"rows", json::array()}};
  if (!meta_path.empty()) {
    std::ifstream m(meta_path);
    try {
      out["meta"] = json::parse(m);
    } catch (const json::exception& e) {
      std::cerr << kProg << ": " << meta_path << ": " << e.what() << "\n";
      return 2;
    }
  }

  // Comparison table: every row measured on more than one target.
  std::vector<std::string> fs_targets;
  for (const auto& t : targets) {
    for (const auto& r : rows) {
      if (r.raw.size() > 1 && r.raw.count(t)) {
        fs_targets.push_back(t);
        break;
      }
    }
  }
  std::vector<std::string> pfs;
  for (const auto& t : fs_targets) {
    if (t.starts_with("pfs-")) pfs.push_back(t);
  }
  std::vector<std::vector<std::string>> cmp = {{"row", "unit"}};
  for (const auto& t : fs_targets) cmp[0].push_back(t);
  cmp[0].push_back("target");
  for (const auto& t : pfs) cmp[0].push_back(t);
  std::vector<std::vector<std::string>> single = {{"row", "unit", "value", "all reps", "target", "verdict"}};

  for (const auto& r : rows) {
    json jr = {{"section", r.section}, {"row", r.name}, {"unit", r.unit},
               {"better", r.lower_better ? "lower" : "higher"}, {"raw", r.raw}};
    std::map<std::string, double> med;
    for (const auto& [t, v] : r.raw) med[t] = median(v);
    jr["median"] = med;
    auto goal = goals().find(r.name);
    if (goal != goals().end()) {
      jr["goal"] = goal->second.ref.empty()
                       ? json{{"max", goal->second.bound}}
                       : json{{"ref", goal->second.ref}, {"min_ratio", goal->second.bound}};
    }

    if (r.raw.size() == 1) {  // a figure of the daemon alone
      const auto& [t, v] = *r.raw.begin();
      std::string all, target, verdict;
      for (double x : v) all += (all.empty() ? "" : " ") + fmt(x);
      if (goal != goals().end() && goal->second.ref.empty()) {
        target = "<= " + fmt(goal->second.bound);
        verdict = med[t] <= goal->second.bound ? "PASS" : "MISS";
        jr["verdict"] = {{t, verdict}};
      }
      single.push_back({r.name, r.unit, fmt(med[t]), all, target, verdict});
      out["rows"].push_back(jr);
      continue;
    }

    std::vector<std::string> cells = {r.name, r.unit};
    json ratios = json::object();
    for (const auto& t : fs_targets) {
      if (!med.count(t)) {
        cells.push_back("-");
        continue;
      }
      std::string c = fmt(med[t]);
      if (t != "plain" && med.count("plain")) {
        double q = speed_ratio(r, med[t], med["plain"]);
        ratios[t] = q;
        c += " (" + fmt_ratio(q) + ")";
      }
      cells.push_back(c);
    }
    jr["ratio_to_plain"] = ratios;
    std::string target;
    json verdicts = json::object();
    if (goal != goals().end() && !goal->second.ref.empty() && med.count(goal->second.ref)) {
      target = ">= " + fmt_ratio(goal->second.bound) + " " + goal->second.ref;
    }
    cells.push_back(target);
    for (const auto& t : pfs) {
      std::string v;
      if (!target.empty() && med.count(t)) {
        double q = speed_ratio(r, med[t], med[goal->second.ref]);
        v = (q >= goal->second.bound ? "PASS " : "MISS ") + fmt_ratio(q);
        verdicts[t] = {{"ratio", q}, {"pass", q >= goal->second.bound}};
      }
      cells.push_back(v);
    }
    if (!verdicts.empty()) jr["verdict"] = verdicts;
    cmp.push_back(cells);
    out["rows"].push_back(jr);
  }

  if (cmp.size() > 1) {
    std::cout << "Medians; in brackets the speed ratio to plain (above 1: faster than plain).\n";
    print_table(cmp);
  }
  if (single.size() > 1) {
    std::cout << "\nThe daemon alone (medians; costs: lower is better):\n";
    print_table(single);
  }
  if (!out_path.empty()) {
    std::ofstream o(out_path);
    o << out.dump(2) << "\n";
    if (!o) {
      std::cerr << kProg << ": cannot write " << out_path << "\n";
      return 1;
    }
  }
  return 0;
}
