// The capture spec's JSON (a `--config FILE`, the CNI config's "capture"
// object, weir.dev/dns): spec_from_json and merge_json over defaults, then,
// for every spec they accept, the planner, the xtables lowering, rendering and
// the render/parse round trip (fuzz_support.h exercise_spec).
//
// Input: JSON text.
#include <cstddef>
#include <cstdint>

#include <nlohmann/json.hpp>

#include "fuzz/fuzz_support.h"
#include "rules/spec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace weir;
  const std::string text = fuzz::as_string(data, size);
  if (fuzz::json_nesting(text) > fuzz::kMaxFuzzNesting) return -1;  // spec_from_json bounds no depth (fuzz_support.h)
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return -1;

  auto spec = spec_from_json(j);
  if (spec.ok()) fuzz::exercise_spec(*spec);

  // Layered as weir-init and weir layer a config file under flags: merged
  // without validation, validated once at the end.
  CaptureSpec layered;
  layered.proxy_uids = {1500};
  layered.exclude_outbound_cidrs = {*parse_cidr("10.96.0.0/12")};
  Status merged = merge_json(layered, j, MergeCheck::Defer);
  if (merged.ok() && validate(layered).ok()) fuzz::exercise_spec(layered);
  // Deferring the validation and validating at the end accepts exactly what
  // validating at once accepts.
  CaptureSpec deferred;
  const bool deferred_ok = merge_json(deferred, j, MergeCheck::Defer).ok() && validate(deferred).ok();
  WEIR_FUZZ_CHECK(deferred_ok == spec.ok(), "MergeCheck::Defer then validate() disagrees with MergeCheck::Validate");
  if (deferred_ok) WEIR_FUZZ_CHECK(deferred == *spec, "MergeCheck::Defer gives another spec");
  return 0;
}
