// weir_nft_apply_bench: installing the default dual-stack capture into a fresh
// network namespace with the nftables filter (in-process, netlink), with the
// libiptc backend (in-process), and with `nft -f` of the same ruleset started
// the same way a plugin would start a tool (fork, setns in the child, exec).
//
// Each run creates three fresh namespaces (not timed), then times, interleaved:
//   nftables:  enter + lock + nftables filter apply(policy) (one batch, both families)
//   libiptc:   enter + lock + libiptc backend apply(plan) (one commit per table and family)
//   nft -f:    fork + setns + exec `nft -f FILE` of rules/nft's text for the same policy
// and, for comparison, variants (nft -f without the delete, re-apply, a
// changed spec, the probe, a whole process). Namespaces are named
// wt-nft-<pid>-bN (or --prefix NAME: NAME-bN) and removed on every path;
// --samples FILE writes every sample for bench/report.py.
//
// This is a benchmark, not a test: it runs `ip` and `nft` itself.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "kernel/iptc/filter.h"
#include "kernel/netns.h"
#include "kernel/nft/filter.h"
#include "rules/nft/ruleset.h"
#include "rules/plan.h"

namespace {

using Clock = std::chrono::steady_clock;
std::atomic<bool> g_stop{false};
std::set<std::string> g_namespaces;

void on_signal(int) { g_stop = true; }

int run(const std::vector<std::string>& argv, int netns_fd = -1, bool quiet = true) {
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    if (quiet) {
      int devnull = open("/dev/null", O_WRONLY);
      dup2(devnull, STDOUT_FILENO);
    }
    if (netns_fd >= 0 && setns(netns_fd, CLONE_NEWNET) != 0) _exit(126);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bool add_netns(const std::string& name) {
  if (run({"ip", "netns", "add", name}) != 0) return false;
  g_namespaces.insert(name);
  return true;
}
void delete_netns(const std::string& name) {
  run({"ip", "netns", "delete", name});
  g_namespaces.erase(name);
}
void delete_all() {
  while (!g_namespaces.empty()) delete_netns(*g_namespaces.begin());
}

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

struct Stats {
  double median = 0, p95 = 0, min = 0;
};
Stats stats(std::vector<double> v) {
  Stats s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.median = v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
  s.p95 = v[std::min(v.size() - 1, static_cast<size_t>(v.size() * 0.95))];
  s.min = v.front();
  return s;
}

// Enters `name`, takes its lock and runs `f` there; the time of all of it.
template <typename F>
double timed_in(const std::string& name, F f, bool* ok) {
  auto t0 = Clock::now();
  auto ns = weir::Netns::open("/var/run/netns/" + name);
  if (!ns) return *ok = false, 0.0;
  auto guard = weir::NetnsGuard::enter(*ns);
  auto lock = weir::NetnsLock::acquire(*ns, 10000);
  if (!guard || !lock) return *ok = false, 0.0;
  *ok = f();
  return ms_since(t0);
}

// Writes every sample as "label<TAB>ms" lines, for bench/report.py.
void write_samples(const std::string& path, const std::vector<std::pair<std::string, const std::vector<double>*>>& all) {
  std::ofstream out(path);
  for (const auto& [label, v] : all)
    for (double ms : *v) out << label << '\t' << ms << '\n';
}

}  // namespace

// weir_nft_apply_bench [RUNS] [--samples FILE] [--prefix NAME]
int main(int argc, char** argv) {
  int runs = 300;
  std::string samples, name_prefix;
  for (int a = 1; a < argc; ++a) {
    const std::string arg = argv[a];
    if (arg == "--samples" && a + 1 < argc) samples = argv[++a];
    else if (arg == "--prefix" && a + 1 < argc) name_prefix = argv[++a];
    else if (!arg.empty() && arg[0] != '-') runs = std::atoi(arg.c_str());
    else {
      std::fprintf(stderr, "usage: weir_nft_apply_bench [RUNS] [--samples FILE] [--prefix NAME]\n");
      return 2;
    }
  }
  if (runs < 1 || runs > 5000) {
    std::fprintf(stderr, "weir_nft_apply_bench: RUNS must be 1..5000\n");
    return 2;
  }
  const int warmup = 5;
  if (geteuid() != 0) {
    std::fprintf(stderr, "weir_nft_apply_bench: needs root (creates network namespaces)\n");
    return 77;
  }
  std::atexit(delete_all);
  struct sigaction sa{};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  const weir::CaptureSpec spec;  // default: both families, REDIRECT
  const weir::RulePlan plan = weir::plan(spec);
  const weir::CapturePolicy policy = weir::capture_policy(spec);
  weir::CaptureSpec changed_spec = spec;
  changed_spec.outbound_port = 15011;
  const weir::CapturePolicy changed = weir::capture_policy(changed_spec);
  const std::string prefix =
      (name_prefix.empty() ? "wt-nft-" + std::to_string(getpid()) : name_prefix) + "-b";
  const std::string file = "/tmp/" + prefix + ".nft", create_only = "/tmp/" + prefix + "-create.nft",
                    warm = "/tmp/" + prefix + "-warm.nft";
  const std::string text = weir::nft::render_text(policy);
  std::ofstream(file) << text;
  // The same without "add table; delete table" in front: what the filter
  // sends into a namespace that has no weir table.
  std::ofstream(create_only) << text.substr(text.find("table inet weir {"));
  // Another tool's nat chains, so nf_tables and NAT are set up in the namespace already.
  std::ofstream(warm) << "table inet warm {\n chain o { type nat hook output priority -100; }\n"
                         " chain p { type nat hook prerouting priority -100; }\n}\n";

  auto nft = weir::make_nft_filter();
  weir::IptcFilter iptc_filter;
  auto* iptc = &iptc_filter;
  std::vector<double> t_nft, t_iptc, t_nftf, t_nft_again, t_nftf_create, t_nft_warm, t_nft_change, t_probe, t_proc,
      t_true;
  // A whole process applying with the nftables filter, as a CNI plugin would
  // (the test tool beside this binary, without its probe), against /bin/true.
  std::string self = argv[0];
  const std::string tool = self.substr(0, self.rfind('/') + 1) + "weir-nft-test-apply";
  int failures = 0;
  for (int i = 0; i < warmup + runs && !g_stop && failures < 5; ++i) {
    const std::string a = prefix + std::to_string(i) + "a", b = prefix + std::to_string(i) + "b",
                      c = prefix + std::to_string(i) + "c", d = prefix + std::to_string(i) + "d",
                      e = prefix + std::to_string(i) + "e", g = prefix + std::to_string(i) + "f",
                      h = prefix + std::to_string(i) + "g";
    if (!add_netns(a) || !add_netns(b) || !add_netns(c) || !add_netns(d) || !add_netns(e) || !add_netns(g) ||
        !add_netns(h)) {
      std::fprintf(stderr, "ip netns add failed\n");
      break;
    }
    const bool measured = i >= warmup;
    // Rotate which goes first, so none always runs right after namespace creation.
    for (int k = 0; k < 8; ++k) {
      const int which = (i + k) % 8;
      bool ok = true;
      if (which == 0) {
        double ms = timed_in(a, [&] { return nft->apply(policy, {weir::Family::V4, weir::Family::V6}).ok(); }, &ok);
        if (ok && measured) t_nft.push_back(ms);
        if (ok && measured) {
          double again = timed_in(a, [&] { return nft->apply(policy, {weir::Family::V4, weir::Family::V6}).ok(); }, &ok);
          t_nft_again.push_back(again);
        }
      } else if (which == 1) {
        double ms = timed_in(b, [&] { return iptc->apply(weir::capture_policy(spec), {weir::Family::V4, weir::Family::V6}).ok(); }, &ok);
        if (ok && measured) t_iptc.push_back(ms);
      } else if (which == 2 || which == 3) {
        int fd = open(("/var/run/netns/" + (which == 2 ? c : d)).c_str(), O_RDONLY | O_CLOEXEC);
        auto t0 = Clock::now();
        int rc = run({"nft", "-f", which == 2 ? file : create_only}, fd);
        double ms = ms_since(t0);
        close(fd);
        ok = rc == 0;
        if (ok && measured) (which == 2 ? t_nftf : t_nftf_create).push_back(ms);
      } else if (which == 6) {
        auto t0 = Clock::now();
        ok = run({tool, "--netns", "/var/run/netns/" + h, "--no-probe"}) == 0;
        if (ok && measured) t_proc.push_back(ms_since(t0));
      } else if (which == 7) {
        auto t0 = Clock::now();
        ok = run({"/bin/true"}) == 0;
        if (ok && measured) t_true.push_back(ms_since(t0));
      } else if (which == 5) {
        double ms = timed_in(g, [&] { return nft->probe(policy).ok(); }, &ok);
        if (ok && measured) t_probe.push_back(ms);
      } else {
        // Untimed: another tool's nat chains first; then weir's apply, then a change.
        int fd = open(("/var/run/netns/" + e).c_str(), O_RDONLY | O_CLOEXEC);
        ok = run({"nft", "-f", warm}, fd) == 0;
        close(fd);
        double ms = ok ? timed_in(e, [&] { return nft->apply(policy, {weir::Family::V4, weir::Family::V6}).ok(); }, &ok) : 0;
        if (ok && measured) t_nft_warm.push_back(ms);
        ms = ok ? timed_in(e, [&] { return nft->apply(changed, {weir::Family::V4, weir::Family::V6}).ok(); }, &ok) : 0;
        if (ok && measured) t_nft_change.push_back(ms);
      }
      if (!ok) {
        std::fprintf(stderr, "run %d step %d failed\n", i, which);
        ++failures;
      }
    }
    delete_netns(a);
    delete_netns(b);
    delete_netns(c);
    delete_netns(d);
    delete_netns(e);
    delete_netns(g);
    delete_netns(h);
  }
  delete_all();
  std::remove(file.c_str());
  std::remove(create_only.c_str());
  std::remove(warm.c_str());
  if (failures || t_nft.empty()) {
    std::fprintf(stderr, "weir_nft_apply_bench: %d failures, no report\n", failures);
    return 1;
  }
  if (!samples.empty())
    write_samples(samples, {{"nft_inproc", &t_nft},
                            {"iptc_inproc", &t_iptc},
                            {"nft_f", &t_nftf},
                            {"nft_inproc_again", &t_nft_again},
                            {"nft_f_create_only", &t_nftf_create},
                            {"nft_inproc_warm", &t_nft_warm},
                            {"nft_inproc_changed", &t_nft_change},
                            {"nft_probe", &t_probe},
                            {"nft_tool_process", &t_proc},
                            {"true_process", &t_true}});
  const Stats n = stats(t_nft), i4 = stats(t_iptc), f = stats(t_nftf), again = stats(t_nft_again);
  std::printf("default spec (ipv4+ipv6, REDIRECT), fresh namespace per run, %zu runs each, interleaved\n", t_nft.size());
  std::printf("%-56s %9s %9s %9s\n", "", "median", "p95", "min");
  std::printf("%-56s %7.3fms %7.3fms %7.3fms\n", "nftables filter in-process (enter+lock+apply)", n.median, n.p95, n.min);
  std::printf("%-56s %7.3fms %7.3fms %7.3fms\n", "libiptc backend in-process (enter+lock+apply)", i4.median, i4.p95, i4.min);
  std::printf("%-56s %7.3fms %7.3fms %7.3fms\n", "fork+setns+exec nft -f (same ruleset)", f.median, f.p95, f.min);
  std::printf("%-56s %7.3fms %7.3fms %7.3fms\n", "nftables filter, same policy again (reads, writes nothing)",
              again.median, again.p95, again.min);
  const Stats fc = stats(t_nftf_create), w = stats(t_nft_warm), ch = stats(t_nft_change);
  std::printf("%-56s %7.3fms %7.3fms %7.3fms\n", "fork+setns+exec nft -f, create only (no delete)", fc.median, fc.p95, fc.min);
  std::printf("%-56s %7.3fms %7.3fms %7.3fms\n", "nftables filter, nat already set up by another table", w.median, w.p95, w.min);
  std::printf("%-56s %7.3fms %7.3fms %7.3fms\n", "nftables filter, a changed spec (delete + create)", ch.median, ch.p95, ch.min);
  const Stats pr = stats(t_probe);
  std::printf("%-56s %7.3fms %7.3fms %7.3fms\n", "nftables filter probe (the batch, aborted)", pr.median, pr.p95, pr.min);
  const Stats pp = stats(t_proc), tt = stats(t_true);
  std::printf("%-56s %7.3fms %7.3fms %7.3fms\n", "a process: weir-nft-test-apply --no-probe (fork+exec)", pp.median, pp.p95, pp.min);
  std::printf("%-56s %7.3fms %7.3fms %7.3fms\n", "a process: /bin/true (fork+exec)", tt.median, tt.p95, tt.min);
  std::printf("process / /bin/true: %.2f\n", pp.median / tt.median);
  std::printf("nftables / libiptc: %.2f   nft -f / nftables: %.1fx   nft -f (create only) / nftables: %.1fx\n",
              n.median / i4.median, f.median / n.median, fc.median / n.median);
  return 0;
}
