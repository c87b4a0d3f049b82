#include "selection.h"

#include <doctest/doctest.h>

using namespace weir::cni;
using Annotations = std::map<std::string, std::string>;

namespace {
bool captured(const std::string& ns, const std::optional<Annotations>& a, bool without = false) {
  auto d = decide(SelectionPolicy{{"kube-system"}, without}, ns, a);
  REQUIRE(d.ok());
  return d->capture;
}
}  // namespace

TEST_CASE("selection rules") {
  CHECK(captured("shop", Annotations{{"weir.dev/capture", "enabled"}}));
  CHECK(captured("shop", Annotations{{"sidecar.istio.io/status", "{}"}}));
  CHECK_FALSE(captured("shop", Annotations{}));
  CHECK_FALSE(captured("shop", Annotations{{"other", "x"}}));
  CHECK_FALSE(captured("kube-system", Annotations{{"weir.dev/capture", "enabled"}}));
  CHECK_FALSE(captured("shop", Annotations{{"weir.dev/capture", "disabled"}, {"sidecar.istio.io/status", "{}"}}));
  CHECK_FALSE(captured("shop", Annotations{{"weir.dev/capture", "enabled"}, {"sidecar.istio.io/inject", "false"}}));
  CHECK(captured("shop", Annotations{{"sidecar.istio.io/status", "{}"}, {"sidecar.istio.io/inject", "true"}}));
  CHECK_FALSE(captured("shop", std::nullopt));
  CHECK(captured("shop", std::nullopt, true));
  CHECK_FALSE(captured("kube-system", std::nullopt, true));
  CHECK(captured("", Annotations{{"weir.dev/capture", "enabled"}}));  // no namespace in CNI_ARGS
}

TEST_CASE("selection: reasons and bad values") {
  auto d = decide(SelectionPolicy{{"kube-system"}, false}, "kube-system", Annotations{});
  REQUIRE(d.ok());
  CHECK(d->reason.find("kube-system") != std::string::npos);
  auto bad = decide(SelectionPolicy{{}, false}, "shop", Annotations{{"weir.dev/capture", "yes"}});
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().kind == weir::ErrorKind::InvalidSpec);
  CHECK(bad.error().message.find("weir.dev/capture") != std::string::npos);
}
