#include "cni/selection.h"

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

TEST_CASE("sidecar.istio.io/inject is read with Go's strconv.ParseBool") {
  const Annotations status{{"sidecar.istio.io/status", "{}"}};
  for (const char* f : {"0", "f", "F", "FALSE", "false", "False"}) {
    Annotations a = status;
    a["sidecar.istio.io/inject"] = f;
    CHECK_MESSAGE(!captured("shop", a), f);
    auto d = decide(SelectionPolicy{{}, false}, "shop", Annotations{{"weir.dev/capture", "enabled"}, {"sidecar.istio.io/inject", f}});
    REQUIRE(d.ok());
    CHECK_FALSE(d->capture);
    CHECK(d->reason.find(std::string("sidecar.istio.io/inject=") + f) != std::string::npos);
  }
  for (const char* t : {"1", "t", "T", "TRUE", "true", "True"}) {
    Annotations a = status;
    a["sidecar.istio.io/inject"] = t;
    CHECK_MESSAGE(captured("shop", a), t);
  }
  // Not a boolean: ignored as Istio ignores it, with a warning.
  for (const char* other : {"no", "off", "fAlse", ""}) {
    auto d = decide(SelectionPolicy{{}, false}, "shop", Annotations{{"sidecar.istio.io/status", "{}"}, {"sidecar.istio.io/inject", other}});
    REQUIRE(d.ok());
    CHECK_MESSAGE(d->capture, other);
    REQUIRE(d->warnings.size() == 1);
    CHECK(d->warnings[0].find("sidecar.istio.io/inject") != std::string::npos);
  }
  CHECK(parse_go_bool("True") == true);
  CHECK(parse_go_bool("F") == false);
  CHECK_FALSE(parse_go_bool("yes"));
}

TEST_CASE("pods with Istio's own init container are skipped") {
  const std::string with_init = R"({"initContainers":["istio-init"],"containers":["istio-proxy"],"revision":"default"})";
  auto d = decide(SelectionPolicy{{}, false}, "shop", Annotations{{"sidecar.istio.io/status", with_init}});
  REQUIRE(d.ok());
  CHECK_FALSE(d->capture);
  CHECK(d->reason.find("istio-init") != std::string::npos);
  // weir.dev/capture: enabled is the user's explicit word and wins (weir's
  // jump sits first, so its capture is the one that acts).
  CHECK(captured("shop", Annotations{{"sidecar.istio.io/status", with_init}, {"weir.dev/capture", "enabled"}}));
  // Istio with its CNI plugin lists istio-validation instead: captured.
  CHECK(captured("shop", Annotations{{"sidecar.istio.io/status", R"({"initContainers":["istio-validation"],"containers":["istio-proxy"]})"}}));
  CHECK(captured("shop", Annotations{{"sidecar.istio.io/status", R"({"initContainers":null})"}}));
  // Unreadable status: still present, so captured, with a warning.
  auto bad = decide(SelectionPolicy{{}, false}, "shop", Annotations{{"sidecar.istio.io/status", "{"}});
  REQUIRE(bad.ok());
  CHECK(bad->capture);
  CHECK(bad->warnings.size() == 1);
}
