// JSON from outside (stdin, annotations) parsed with a bound on its nesting.
// nlohmann's parser itself does not recurse, but copying, comparing and
// printing a value recurse once per level: a document nested some 10,000
// levels deep (24 KiB of "[") overflows the stack there. Bounding the depth
// at parse time means every later step is safe. Never throws.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "rules/error.h"

namespace weir::cni {

// Far deeper than any CNI config, result or annotation (theirs is below 10),
// far shallower than what overflows the stack in any build.
inline constexpr int kMaxJsonDepth = 512;

enum class DeepValues {
  Refuse,  // a value nested deeper than the bound makes the parse fail
  Drop,    // values nested deeper are left out (their parents stay, emptied)
};

struct BoundedJson {
  nlohmann::json value;
  bool dropped = false;  // DeepValues::Drop left something out
};

// InvalidArgument with the parser's message when `text` is not JSON, or (with
// Refuse) when it nests deeper than `max_depth` (an array or object at the
// top level is depth 1).
Result<BoundedJson> parse_bounded_json(const std::string& text, DeepValues deep = DeepValues::Refuse,
                                       int max_depth = kMaxJsonDepth);

// The string value of the top-level key `key` of a JSON object text, read as
// far as the text goes: found even when the text is cut short (a config
// over the size limit) or invalid after it, or nested too deep elsewhere.
// "" when absent or not a string; the last one wins, as in parse_bounded_json().
std::string top_level_string(const std::string& text, const std::string& key);

}  // namespace weir::cni
