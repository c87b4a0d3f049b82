#include "cni/node/conf_files.h"

#include <doctest/doctest.h>

using namespace weir::node;
using ojson = nlohmann::ordered_json;

namespace {

const std::string kCalico = R"({
  "name": "k8s-pod-network",
  "cniVersion": "0.3.1",
  "plugins": [
    {
      "type": "calico",
      "log_level": "info",
      "mtu": 1440,
      "ratio": 0.10,
      "big": 18446744073709551615,
      "ipam": {"type": "calico-ipam"},
      "policy": {"type": "k8s"}
    },
    {
      "type": "portmap",
      "snat": true,
      "capabilities": {"portMappings": true}
    }
  ]
}
)";

const std::string kFlannelConf = R"({
  "name": "cbr0",
  "cniVersion": "0.3.1",
  "type": "flannel",
  "delegate": {"hairpinMode": true, "isDefaultGateway": true}
}
)";

ojson entry() {
  return ojson::parse(R"({"type": "weir-cni", "capabilities": {"io.kubernetes.cri.pod-annotations": true}})");
}

std::string name_of(const std::vector<ConfFile>& files) {
  auto p = select_primary(files);
  return p ? p->name : "-";
}

}  // namespace

TEST_CASE("conf_kind: the runtime's extensions") {
  CHECK(conf_kind("10-calico.conflist") == ConfKind::List);
  CHECK(conf_kind("10-flannel.conf") == ConfKind::Single);
  CHECK(conf_kind("99-x.json") == ConfKind::Single);
  CHECK_FALSE(conf_kind("10-calico.conflist.bak"));
  CHECK_FALSE(conf_kind("calico-kubeconfig"));
  CHECK_FALSE(conf_kind("05-cilium.conflist.cilium_bak"));
  CHECK_FALSE(conf_kind(".weir-tmp-10-calico.conflist"));
}

TEST_CASE("select_primary over a table of directory contents") {
  const std::string list = kCalico;
  struct Row {
    const char* what;
    std::vector<ConfFile> files;
    const char* primary;
  };
  std::vector<Row> rows = {
      {"empty directory", {}, "-"},
      {"one conflist", {{"10-calico.conflist", list}}, "10-calico.conflist"},
      {"first by name wins, whatever the listing order", {{"20-b.conflist", list}, {"10-a.conflist", list}}, "10-a.conflist"},
      {"byte order: upper case sorts first", {{"a.conflist", list}, {"B.conflist", list}}, "B.conflist"},
      {"a .conf counts", {{"20-b.conflist", list}, {"10-flannel.conf", kFlannelConf}}, "10-flannel.conf"},
      {"a .json counts", {{"20-b.conflist", list}, {"15-x.json", kFlannelConf}}, "15-x.json"},
      {"other extensions are not configs", {{"01-x.conflist.bak", list}, {"05-y.yaml", list}, {"10-a.conflist", list}}, "10-a.conflist"},
      {"unparsable file skipped", {{"05-broken.conflist", "{\"name\": \"x\", \"plugins\": ["}, {"10-a.conflist", list}}, "10-a.conflist"},
      {"list without plugins skipped", {{"05-e.conflist", R"({"name":"e","plugins":[]})"}, {"10-a.conflist", list}}, "10-a.conflist"},
      {"list without name skipped", {{"05-e.conflist", R"({"plugins":[{"type":"bridge"}]})"}, {"10-a.conflist", list}}, "10-a.conflist"},
      {"a list in a .conf skipped", {{"05-l.conf", list}, {"10-a.conflist", list}}, "10-a.conflist"},
      {"weir's own file is never the primary", {{kOwnFileName, list}, {"10-a.conflist", list}}, "10-a.conflist"},
      {"only weir's own file: none", {{kOwnFileName, list}}, "-"},
      {"only broken files: none", {{"10-a.conflist", "not json"}}, "-"},
  };
  for (const auto& r : rows) {
    INFO(r.what);
    CHECK(name_of(r.files) == r.primary);
  }
  std::vector<std::string> skipped;
  (void)select_primary({{"05-broken.conflist", "nope"}, {"10-a.conflist", list}}, &skipped);
  REQUIRE(skipped.size() == 1);
  CHECK(skipped[0].find("05-broken.conflist: not valid JSON") == 0);
}

TEST_CASE("with_entry appends weir as the last plugin, everything else byte for byte") {
  auto out = with_entry(kCalico, entry());
  REQUIRE(out.ok());
  const std::string& t = out.value();
  CHECK(count_entries(ConfKind::List, t) == 1);
  auto doc = ojson::parse(t);
  CHECK(doc["plugins"].size() == 3);
  CHECK(doc["plugins"].back() == entry());
  // Everything before the end of portmap is the original text, numbers spelled as they were.
  const size_t portmap_end = kCalico.find("\n    }\n  ]") + 6;
  CHECK(t.substr(0, portmap_end) == kCalico.substr(0, portmap_end));
  CHECK(t.find("\"ratio\": 0.10") != std::string::npos);
  CHECK(t.find("18446744073709551615") != std::string::npos);
  CHECK(t.substr(t.size() - 6) == "  ]\n}\n");
  // Indented like its neighbours.
  CHECK(t.find("\n    {\n      \"type\": \"weir-cni\"") != std::string::npos);

  SUBCASE("idempotent: the same text the second time") {
    auto again = with_entry(t, entry());
    REQUIRE(again.ok());
    CHECK(again.value() == t);
  }
  SUBCASE("uninstall gives back the original bytes") {
    auto back = without_entries(t);
    REQUIRE(back.ok());
    CHECK(back.value() == kCalico);
  }
  SUBCASE("a changed entry replaces the old one") {
    ojson e2 = entry();
    e2["excludeNamespaces"] = {"kube-system", "istio-system"};
    auto replaced = with_entry(t, e2);
    REQUIRE(replaced.ok());
    CHECK(count_entries(ConfKind::List, replaced.value()) == 1);
    CHECK(ojson::parse(replaced.value())["plugins"].back() == e2);
    auto back = without_entries(replaced.value());
    REQUIRE(back.ok());
    CHECK(back.value() == kCalico);
  }
}

TEST_CASE("with_entry moves a weir entry that is not last, and removes duplicates") {
  const std::string text = R"({"name":"n","cniVersion":"1.0.0","plugins":[{"type":"weir-cni"},{"type":"bridge","x":1.5e3},{"type":"weir-cni","old":true}]})";
  auto out = with_entry(text, entry());
  REQUIRE(out.ok());
  CHECK(count_entries(ConfKind::List, out.value()) == 1);
  auto doc = ojson::parse(out.value());
  REQUIRE(doc["plugins"].size() == 2);
  CHECK(doc["plugins"][0]["type"] == "bridge");
  CHECK(out.value().find("{\"type\":\"bridge\",\"x\":1.5e3}") != std::string::npos);  // spelled as written
  CHECK(out.value().find("\n") == std::string::npos);  // a one-line file stays on one line
  auto none = without_entries(text);
  REQUIRE(none.ok());
  CHECK(none.value() == R"({"name":"n","cniVersion":"1.0.0","plugins":[{"type":"bridge","x":1.5e3}]})");
}

TEST_CASE("with_entry refuses what is not a list, and an entry that is not weir's") {
  CHECK_FALSE(with_entry("{", entry()).ok());
  CHECK_FALSE(with_entry(R"({"name":"n","plugins":[]})", entry()).ok());
  CHECK_FALSE(with_entry(kCalico, ojson::parse(R"({"type":"bridge"})")).ok());
}

TEST_CASE("keys after plugins and odd spacing survive") {
  const std::string text = "{\"name\" : \"n\",\t\"plugins\" : [ {\"type\":\"a\"} ,\n {\"type\":\"b\"}\n ] , \"z\":[1,2,{\"plugins\":[]}] }";
  auto out = with_entry(text, entry());
  REQUIRE(out.ok());
  CHECK(out.value().find("\"z\":[1,2,{\"plugins\":[]}] }") != std::string::npos);
  auto back = without_entries(out.value());
  REQUIRE(back.ok());
  CHECK(back.value() == text);
}

TEST_CASE("single_to_list converts a .conf as libcni does") {
  auto out = single_to_list(kFlannelConf);
  REQUIRE(out.ok());
  auto doc = ojson::parse(out.value());
  CHECK(doc["cniVersion"] == "0.3.1");
  CHECK(doc["name"] == "cbr0");
  REQUIRE(doc["plugins"].size() == 1);
  CHECK(doc["plugins"][0] == ojson::parse(kFlannelConf));  // kept whole, name and cniVersion too
  CHECK(check_network_config(ConfKind::List, out.value()).ok());
  CHECK(list_name_for("10-flannel.conf") == "10-flannel.conflist");
  CHECK(list_name_for("10-x.json") == "10-x.conflist");
  CHECK_FALSE(single_to_list(kCalico).ok());  // a list is not a single config
}

TEST_CASE("plan_install: insert mode") {
  SUBCASE("no primary: nothing, never a standalone config") {
    auto plan = plan_install({{"README", "x"}}, ConflistMode::Insert, entry());
    REQUIRE(plan.ok());
    CHECK_FALSE(plan->primary);
    CHECK(plan->changes.empty());
  }
  SUBCASE("a conflist: one write, then nothing") {
    auto plan = plan_install({{"10-calico.conflist", kCalico}}, ConflistMode::Insert, entry());
    REQUIRE(plan.ok());
    REQUIRE(plan->changes.size() == 1);
    CHECK(plan->changes[0].op == FileChange::Op::Write);
    CHECK(plan->changes[0].name == "10-calico.conflist");
    CHECK(plan->config_file == "10-calico.conflist");
    auto again = plan_install({{"10-calico.conflist", plan->changes[0].text}}, ConflistMode::Insert, entry());
    REQUIRE(again.ok());
    CHECK(again->changes.empty());
  }
  SUBCASE("a .conf: the .conflist written first, then the .conf removed") {
    auto plan = plan_install({{"10-flannel.conf", kFlannelConf}}, ConflistMode::Insert, entry());
    REQUIRE(plan.ok());
    REQUIRE(plan->changes.size() == 2);
    CHECK(plan->changes[0].op == FileChange::Op::Write);
    CHECK(plan->changes[0].name == "10-flannel.conflist");
    CHECK(plan->changes[0].mode_from == "10-flannel.conf");
    CHECK(count_entries(ConfKind::List, plan->changes[0].text) == 1);
    CHECK(plan->changes[1] == FileChange{FileChange::Op::Remove, "10-flannel.conf", "", ""});
  }
  SUBCASE("a leftover own file is removed") {
    auto plan = plan_install({{"10-calico.conflist", kCalico}, {kOwnFileName, kCalico}}, ConflistMode::Insert, entry());
    REQUIRE(plan.ok());
    REQUIRE(plan->changes.size() == 2);
    CHECK(plan->changes[1] == FileChange{FileChange::Op::Remove, kOwnFileName, "", ""});
  }
}

TEST_CASE("plan_install: own mode keeps weir's file in step with the primary") {
  auto plan = plan_install({{"10-calico.conflist", kCalico}}, ConflistMode::Own, entry());
  REQUIRE(plan.ok());
  REQUIRE(plan->changes.size() == 1);
  CHECK(plan->changes[0].name == kOwnFileName);
  CHECK(plan->changes[0].mode_from == "10-calico.conflist");
  CHECK(plan->config_file == kOwnFileName);
  const std::string own = plan->changes[0].text;
  // The primary is rewritten by its agent: the own file follows.
  std::string rewritten = kCalico;
  rewritten.replace(rewritten.find("1440"), 4, "1400");
  auto next = plan_install({{"10-calico.conflist", rewritten}, {kOwnFileName, own}}, ConflistMode::Own, entry());
  REQUIRE(next.ok());
  REQUIRE(next->changes.size() == 1);
  CHECK(next->changes[0].text.find("\"mtu\": 1400") != std::string::npos);
  auto same = plan_install({{"10-calico.conflist", kCalico}, {kOwnFileName, own}}, ConflistMode::Own, entry());
  REQUIRE(same.ok());
  CHECK(same->changes.empty());
}

TEST_CASE("plan_uninstall: entries out first, the binary only when nothing names it") {
  auto installed = with_entry(kCalico, entry());
  REQUIRE(installed.ok());
  auto plan = plan_uninstall({{"10-calico.conflist", installed.value()}, {kOwnFileName, installed.value()}, {"notes.txt", "weir-cni"}});
  REQUIRE(plan.changes.size() == 2);
  // The own file sorts first: it is the one the runtime reads.
  CHECK(plan.changes[0] == FileChange{FileChange::Op::Remove, kOwnFileName, "", ""});
  CHECK(plan.changes[1] == FileChange{FileChange::Op::Write, "10-calico.conflist", kCalico, ""});
  CHECK(plan.remove_binary());

  auto standalone = plan_uninstall({{"99-weir-by-hand.conf", R"({"name":"w","type":"weir-cni"})"}});
  CHECK(standalone.changes.empty());
  CHECK_FALSE(standalone.remove_binary());
  CHECK(standalone.still_named_by == std::vector<std::string>{"99-weir-by-hand.conf"});

  auto nothing = plan_uninstall({{"10-calico.conflist", kCalico}});
  CHECK(nothing.changes.empty());  // idempotent
  CHECK(nothing.remove_binary());
}

TEST_CASE("parse_duration_ms") {
  CHECK(parse_duration_ms("500ms").value() == 500);
  CHECK(parse_duration_ms("2s").value() == 2000);
  CHECK(parse_duration_ms("1m").value() == 60000);
  CHECK(parse_duration_ms("1h").value() == 3600000);
  for (const char* bad : {"", "s", "10", "1.5s", "-1s", "2 s", "1d", "ms"}) {
    INFO(bad);
    CHECK_FALSE(parse_duration_ms(bad).ok());
  }
}
