// Reordering what was read back like what was wanted, so that a comparison
// or a diff lines the two up (used by the capture policy's and the xtables
// plan's order_like).
#pragma once

#include <cstddef>
#include <vector>

namespace weir {

// `live`'s items, those whose key matches an item of `wanted` first and in
// `wanted`'s order (each live item used once), then the rest in their order.
template <typename Item, typename Key>
std::vector<Item> ordered_like(const std::vector<Item>& live, const std::vector<Item>& wanted, Key key) {
  std::vector<Item> out;
  std::vector<bool> used(live.size(), false);
  for (const Item& w : wanted) {
    for (std::size_t i = 0; i < live.size(); ++i) {
      if (!used[i] && key(live[i]) == key(w)) {
        out.push_back(live[i]);
        used[i] = true;
        break;
      }
    }
  }
  for (std::size_t i = 0; i < live.size(); ++i)
    if (!used[i]) out.push_back(live[i]);
  return out;
}

}  // namespace weir
