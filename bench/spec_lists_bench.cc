// Times long lists through the pod annotations, as one CNI ADD reads them:
// Istio's traffic.sidecar.istio.io/excludeOutboundIPRanges (exclude lists add
// to the configured ones, de-duplicated) and weir.dev/excludeOutboundCidrs,
// for 1k, 10k and 30k entries; then the planner on the resulting spec, for
// comparison. Needs no root. Prints figures; asserts nothing about time.
//   weir_spec_lists_bench [--runs N]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "cni/annotations.h"
#include "rules/plan.h"

namespace {

using Clock = std::chrono::steady_clock;

// `n` distinct IPv4 /32s and /24s inside 198.18.0.0/15 and 10.0.0.0/8.
std::string cidr_list(int n) {
  std::string out;
  for (int i = 0; i < n; ++i) {
    if (i) out += ',';
    if (i % 2 == 0) {
      const int h = i / 2;
      out += "198." + std::to_string(18 + (h >> 16)) + "." + std::to_string((h >> 8) & 255) + "." +
             std::to_string(h & 255);
    } else {
      const int h = i / 2;
      out += "10." + std::to_string((h >> 8) & 255) + "." + std::to_string(h & 255) + ".0/24";
    }
  }
  return out;
}

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  int runs = 5;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--runs") == 0) runs = std::max(1, std::atoi(argv[i + 1]));
  }
  std::printf("%-52s %8s %12s %12s\n", "input", "entries", "annotations", "+ plan");
  for (const char* annotation :
       {"traffic.sidecar.istio.io/excludeOutboundIPRanges", "weir.dev/excludeOutboundCidrs"}) {
    for (int n : {1000, 10000, 30000}) {
      const std::map<std::string, std::string> annotations{{annotation, cidr_list(n)}};
      double best_annotations = 1e18, best_plan = 1e18;
      std::size_t entries = 0;
      for (int r = 0; r < runs; ++r) {
        weir::CaptureSpec spec;
        spec.ip_families = weir::IpFamilies::V4;
        std::vector<std::string> warnings;
        const auto t0 = Clock::now();
        weir::Status st = weir::cni::apply_annotations(spec, annotations, warnings);
        best_annotations = std::min(best_annotations, ms_since(t0));
        if (!st) {
          std::fprintf(stderr, "%s: %s\n", annotation, st.error().message.c_str());
          return 1;
        }
        entries = spec.exclude_outbound_cidrs.size();
        const auto t1 = Clock::now();
        weir::RulePlan p = weir::plan(spec);
        best_plan = std::min(best_plan, ms_since(t1));
        if (p.rulesets.empty()) return 1;
      }
      std::printf("%-52s %8zu %9.2f ms %9.2f ms\n", annotation, entries, best_annotations, best_plan);
    }
  }
  std::printf("(best of %d runs each; the plan column is the planner alone on the annotated spec)\n", runs);
  return 0;
}
