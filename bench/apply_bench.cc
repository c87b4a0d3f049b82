// weir_apply_bench: what a front end pays to install the default capture into a
// fresh network namespace, next to iptables-legacy-restore of the same rules.
//
// Each run creates fresh namespaces (not timed), then times
//   in-process: weir::apply(NetnsTarget, default spec) — open + enter the
//               namespace, take its lock, plan, commit both families;
//   restore:    the same plan rendered, piped to `ip netns exec NS
//               iptables-legacy-restore` and `... ip6tables-legacy-restore`;
//   restore (setns): the same, but the child enters the namespace itself and
//               execs the restore tools directly (no `ip` in between), the
//               kindest comparison for the restore tools;
// interleaved, so all three see the same machine load. Prints medians, p95 and
// the ratios. Namespaces are named wt-bed-<pid>-bN and removed on every path.
//
// This is a benchmark, not a test: it runs `ip` and the restore tools itself.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "kernel/iptc/filter.h"
#include "kernel/netns.h"
#include "kernel/ops.h"
#include "rules/plan.h"
#include "rules/xtables/render.h"
#include "rules/spec.h"

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;

std::atomic<bool> g_stop{false};
std::set<std::string> g_namespaces;  // created and not yet deleted

void on_signal(int) { g_stop = true; }

// Runs argv, feeding `input` on stdin when given; returns the exit status
// (-1 when it could not start). `netns_fd` >= 0: the child enters that
// namespace before exec.
int run(const std::vector<std::string>& argv, const std::string* input = nullptr, int netns_fd = -1) {
  int pipefd[2] = {-1, -1};
  if (input && pipe2(pipefd, O_CLOEXEC) != 0) return -1;
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    if (input) dup2(pipefd[0], STDIN_FILENO);
    int devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, STDOUT_FILENO);
    if (netns_fd >= 0 && setns(netns_fd, CLONE_NEWNET) != 0) _exit(126);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  if (input) {
    close(pipefd[0]);
    size_t off = 0;
    while (off < input->size()) {
      ssize_t n = write(pipefd[1], input->data() + off, input->size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    close(pipefd[1]);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
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

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

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

// The iptables-restore input of one family of the plan.
std::string family_text(const weir::RulePlan& p, weir::Family f) {
  const weir::Ruleset* rs = p.find(f);
  return rs ? weir::render_ruleset(*rs) : std::string();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"weir_apply_bench: in-process apply vs iptables-legacy-restore, fresh namespace each run"};
  int runs = 200;
  int warmup = 5;
  bool breakdown = true;
  app.add_option("--runs", runs, "measured runs of each (at least 200 for the report)")->check(CLI::Range(1, 5000));
  app.add_option("--warmup", warmup, "unmeasured runs first")->check(CLI::Range(0, 100));
  app.add_flag("--breakdown,!--no-breakdown", breakdown, "also time each step of the in-process apply");
  CLI11_PARSE(app, argc, argv);

  if (geteuid() != 0) {
    std::fprintf(stderr, "weir_apply_bench: needs root (creates network namespaces)\n");
    return 77;
  }
  std::atexit(delete_all);
  struct sigaction sa{};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGHUP, &sa, nullptr);

  const weir::CaptureSpec spec;  // the default capture, both families
  const weir::RulePlan plan = weir::plan(spec);
  const std::string v4 = family_text(plan, weir::Family::V4);
  const std::string v6 = family_text(plan, weir::Family::V6);
  const std::string prefix = "wt-bed-" + std::to_string(getpid()) + "-b";

  std::vector<double> inproc, restore, restore_setns;
  int failures = 0;
  for (int i = 0; i < warmup + runs && !g_stop && failures < 5; ++i) {
    const std::string a = prefix + std::to_string(i) + "a", b = prefix + std::to_string(i) + "b",
                      c = prefix + std::to_string(i) + "c";
    if (!add_netns(a) || !add_netns(b) || !add_netns(c)) {
      std::fprintf(stderr, "ip netns add failed\n");
      break;
    }
    const bool measured = i >= warmup;

    // In-process, as a front end calls it.
    weir::NetnsTarget t;
    t.netns_path = "/var/run/netns/" + a;
    auto t0 = Clock::now();
    auto r = weir::apply(t, spec);
    double d = ms_since(t0);
    if (!r) {
      std::fprintf(stderr, "apply into %s: %s\n", a.c_str(), r.error().message.c_str());
      ++failures;
    } else if (measured) {
      inproc.push_back(d);
    }

    // iptables-legacy-restore through `ip netns exec`, both families.
    t0 = Clock::now();
    int rc4 = run({"ip", "netns", "exec", b, "iptables-legacy-restore"}, &v4);
    int rc6 = v6.empty() ? 0 : run({"ip", "netns", "exec", b, "ip6tables-legacy-restore"}, &v6);
    d = ms_since(t0);
    if (rc4 != 0 || rc6 != 0) {
      std::fprintf(stderr, "iptables-legacy-restore in %s: exit %d/%d\n", b.c_str(), rc4, rc6);
      ++failures;
    } else if (measured) {
      restore.push_back(d);
    }

    // The restore tools entered directly (setns in the child, then exec).
    int fd = open(("/var/run/netns/" + c).c_str(), O_RDONLY | O_CLOEXEC);
    t0 = Clock::now();
    rc4 = run({"iptables-legacy-restore"}, &v4, fd);
    rc6 = v6.empty() ? 0 : run({"ip6tables-legacy-restore"}, &v6, fd);
    d = ms_since(t0);
    if (fd >= 0) close(fd);
    if (rc4 != 0 || rc6 != 0) {
      std::fprintf(stderr, "iptables-legacy-restore (setns) in %s: exit %d/%d\n", c.c_str(), rc4, rc6);
      ++failures;
    } else if (measured) {
      restore_setns.push_back(d);
    }

    delete_netns(a);
    delete_netns(b);
    delete_netns(c);
  }
  delete_all();

  // Where the in-process time goes: the steps of weir::apply, timed one by one
  // (each in a fresh namespace too).
  std::vector<double> t_open, t_enter, t_lock, t_plan, t_commit, t_again;
  for (int i = 0; breakdown && i < runs && !g_stop && failures < 5; ++i) {
    const std::string d = prefix + std::to_string(i) + "d";
    if (!add_netns(d)) break;
    auto t0 = Clock::now();
    auto ns = weir::Netns::open("/var/run/netns/" + d);
    t_open.push_back(ms_since(t0));
    if (!ns) {
      std::fprintf(stderr, "open %s: %s\n", d.c_str(), ns.error().message.c_str());
      ++failures;
      delete_netns(d);
      continue;
    }
    {
      t0 = Clock::now();
      auto guard = weir::NetnsGuard::enter(*ns);
      t_enter.push_back(ms_since(t0));
      t0 = Clock::now();
      auto lock = weir::NetnsLock::acquire(*ns, 10000);
      t_lock.push_back(ms_since(t0));
      t0 = Clock::now();
      const weir::CapturePolicy p = weir::capture_policy(spec);
      t_plan.push_back(ms_since(t0));
      weir::IptcFilter filter;
      const std::vector<weir::Family> both{weir::Family::V4, weir::Family::V6};
      t0 = Clock::now();
      auto previous = filter.apply(p, both);
      weir::Status st = previous ? weir::Status{} : weir::Status{previous.error()};
      t_commit.push_back(ms_since(t0));
      // The same plan again: the tables exist now, so this is libiptc's own cost.
      t0 = Clock::now();
      if (st) {
        auto again = filter.apply(p, both);
        if (!again) st = again.error();
      }
      t_again.push_back(ms_since(t0));
      if (!guard || !lock || !st) {
        std::fprintf(stderr, "breakdown run in %s failed\n", d.c_str());
        ++failures;
      }
    }
    delete_netns(d);
  }
  delete_all();

  if (failures || inproc.empty() || restore.empty()) {
    std::fprintf(stderr, "weir_apply_bench: %d failed runs, no report\n", failures);
    return 1;
  }
  Stats s1 = stats(inproc), s2 = stats(restore), s3 = stats(restore_setns);
  std::printf("default spec (%s), fresh namespace per run, %zu runs each\n",
              v6.empty() ? "ipv4" : "ipv4+ipv6", inproc.size());
  std::printf("%-44s %9s %9s %9s\n", "", "median", "p95", "min");
  std::printf("%-44s %7.3fms %7.3fms %7.3fms\n", "in-process weir::apply (enter+lock+plan+commit)", s1.median,
              s1.p95, s1.min);
  std::printf("%-44s %7.3fms %7.3fms %7.3fms\n", "ip netns exec iptables-legacy-restore (v4+v6)", s2.median,
              s2.p95, s2.min);
  std::printf("%-44s %7.3fms %7.3fms %7.3fms\n", "setns + exec iptables-legacy-restore (v4+v6)", s3.median,
              s3.p95, s3.min);
  std::printf("ratio in-process / ip netns exec restore: %.4f (1/%.0f)\n", s1.median / s2.median,
              s2.median / s1.median);
  std::printf("ratio in-process / setns+exec restore:    %.4f (1/%.0f)\n", s1.median / s3.median,
              s3.median / s1.median);
  if (!t_commit.empty()) {
    std::printf("in-process steps (median of %zu): open %.3fms, enter %.3fms, lock %.3fms, plan %.3fms, "
                "backend apply (libiptc, both families) %.3fms; the same apply again %.3fms\n",
                t_commit.size(), stats(t_open).median, stats(t_enter).median, stats(t_lock).median,
                stats(t_plan).median, stats(t_commit).median, stats(t_again).median);
  }
  std::printf("target: in-process <= 0.150 ms median and < 1/10 of restore: %s\n",
              s1.median <= 0.150 && s1.median * 10 < s3.median ? "met" : "NOT met");
  return 0;
}
