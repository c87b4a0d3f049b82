#include "cni/config.h"

#include <doctest/doctest.h>

using namespace weir::cni;

TEST_CASE("CNI_ARGS: any order, unknown keys kept, malformed items skipped") {
  auto a = parse_cni_args("K8S_POD_NAME=web-1;IgnoreUnknown=1;junk;=x;K8S_POD_NAMESPACE=shop;K8S_POD_UID=u-1;");
  CHECK(a.at("K8S_POD_NAME") == "web-1");
  CHECK(a.at("IgnoreUnknown") == "1");
  CHECK(a.count("junk") == 0);
  auto pod = pod_from_args(a);
  CHECK(pod.ns == "shop");
  CHECK(pod.name == "web-1");
  CHECK(pod.uid == "u-1");
  CHECK(pod.display() == "shop/web-1");
  CHECK(pod_from_args(parse_cni_args("")).display() == "-");
  CHECK(parse_cni_args("A=b=c").at("A") == "b=c");
}

TEST_CASE("commands") {
  CHECK(parse_command("ADD") == CniCommand::Add);
  CHECK(parse_command("STATUS") == CniCommand::Status);
  CHECK(parse_command("GC") == CniCommand::Gc);
  CHECK_FALSE(parse_command("add"));
  CHECK_FALSE(parse_command(""));
}

TEST_CASE("environment: what each command needs") {
  CniEnv env{"ADD", "c1", "/var/run/netns/p", "eth0", "", ""};
  CHECK_FALSE(check_env(CniCommand::Add, env));
  env.netns.clear();
  auto e = check_env(CniCommand::Add, env);
  REQUIRE(e);
  CHECK(e->code == 4);
  CHECK(e->msg.find("CNI_NETNS") != std::string::npos);
  CHECK_FALSE(check_env(CniCommand::Del, env));  // DEL works without a netns
  env.container_id.clear();
  REQUIRE(check_env(CniCommand::Del, env));
  CHECK(check_env(CniCommand::Del, env)->msg.find("CNI_CONTAINERID") != std::string::npos);
  CHECK_FALSE(check_env(CniCommand::Version, CniEnv{}));
  CHECK_FALSE(check_env(CniCommand::Gc, CniEnv{}));
}

TEST_CASE("versions") {
  CHECK(is_supported_version("0.3.0"));
  CHECK(is_supported_version("1.1.0"));
  CHECK_FALSE(is_supported_version("0.2.0"));
  CHECK_FALSE(is_supported_version("2.0.0"));
  CHECK(compare_versions("0.4.0", "1.0.0") < 0);
  CHECK(compare_versions("1.1.0", "1.0.0") > 0);
  CHECK(compare_versions("0.3.1", "0.3.1") == 0);
  CHECK(compare_versions("0.10.0", "0.4.0") > 0);
}

TEST_CASE("config: defaults and every key") {
  auto c = parse_config(R"({"cniVersion":"1.0.0","name":"k8s","type":"weir-cni",
    "capabilities":{"io.kubernetes.cri.pod-annotations":true},
    "prevResult":{"cniVersion":"1.0.0","ips":[]},
    "runtimeConfig":{"io.kubernetes.cri.pod-annotations":{"weir.dev/capture":"enabled"}}})");
  REQUIRE(c.ok());
  CHECK(c.value().cni_version == "1.0.0");
  CHECK(c.value().exclude_namespaces == std::vector<std::string>{"kube-system"});
  CHECK_FALSE(c.value().capture_without_annotations);
  CHECK(c.value().spec == weir::CaptureSpec{});
  REQUIRE(c.value().annotations);
  CHECK(c.value().annotations->at("weir.dev/capture") == "enabled");
  REQUIRE(c.value().prev_result);

  auto d = parse_config(R"({"cniVersion":"0.3.1","name":"n","capture":{"outboundPort":16001},
    "excludeNamespaces":["a","b"],"captureWithoutAnnotations":true,"logLevel":"debug","logFile":"/tmp/x.log"})");
  REQUIRE(d.ok());
  CHECK(d.value().spec.outbound_port == 16001);
  CHECK(d.value().exclude_namespaces == std::vector<std::string>{"a", "b"});
  CHECK(d.value().capture_without_annotations);
  CHECK(d.value().log_level == "debug");
  CHECK(d.value().log_file == "/tmp/x.log");
  CHECK_FALSE(d.value().annotations);  // runtime passed none
  CHECK_FALSE(d.value().prev_result);
}

TEST_CASE("config: the capture object takes backend like every other field") {
  auto c = parse_config(R"({"cniVersion":"1.0.0","name":"n","capture":{"backend":"nftables","tproxyMark":"0x539"}})");
  REQUIRE(c.ok());
  CHECK(c.value().spec.backend == weir::FilterBackend::Nftables);
  CHECK(c.value().spec.tproxy_mark == 0x539);
  auto bad = parse_config(R"({"cniVersion":"1.0.0","capture":{"backend":"nft"}})");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().code == 7);
  CHECK(bad.error().msg.find("backend") != std::string::npos);
}

TEST_CASE("config: errors carry the right code and name the problem") {
  auto code_of = [](const std::string& text) {
    auto c = parse_config(text);
    REQUIRE_FALSE(c.ok());
    return c.error();
  };
  CHECK(code_of("{not json").code == 6);
  CHECK(code_of("[1,2]").code == 6);
  CHECK(code_of(R"({"name":"x"})").code == 1);
  auto v = code_of(R"({"cniVersion":"0.2.0"})");
  CHECK(v.code == 1);
  CHECK(v.msg.find("0.2.0") != std::string::npos);
  auto t = code_of(R"({"cniVersion":"1.0.0","excludeNamespaces":"kube-system"})");
  CHECK(t.code == 7);
  CHECK(t.msg.find("excludeNamespaces") != std::string::npos);
  CHECK(code_of(R"({"cniVersion":"1.0.0","captureWithoutAnnotations":"yes"})").msg.find("captureWithoutAnnotations") != std::string::npos);
  CHECK(code_of(R"({"cniVersion":"1.0.0","logLevel":"loud"})").msg.find("logLevel") != std::string::npos);
  auto cap = code_of(R"({"cniVersion":"1.0.0","capture":{"outboundPort":0}})");
  CHECK(cap.code == 7);
  CHECK(cap.msg.find("outboundPort") != std::string::npos);
  auto unk = code_of(R"({"cniVersion":"1.0.0","capture":{"outbondPort":1}})");
  CHECK(unk.msg.find("outbondPort") != std::string::npos);
  CHECK(code_of(R"({"cniVersion":"1.0.0","prevResult":"x"})").msg.find("prevResult") != std::string::npos);
  auto an = code_of(R"({"cniVersion":"1.0.0","runtimeConfig":{"io.kubernetes.cri.pod-annotations":{"a":1}}})");
  CHECK(an.code == 7);
  CHECK(an.msg.find("annotation a") != std::string::npos);
  CHECK(code_of(R"({"cniVersion":"1.0.0","kubernetes":{}})").msg.find("kubernetes") != std::string::npos);
  std::string big = R"({"cniVersion":"1.0.0","pad":")" + std::string(1 << 20, 'x') + "\"}";
  auto b = code_of(big);
  CHECK(b.code == 7);
  CHECK(b.msg.find("bytes") != std::string::npos);
}

TEST_CASE("version_of reads only cniVersion") {
  CHECK(version_of(R"({"cniVersion":"0.4.0"})") == "0.4.0");
  CHECK(version_of("") == "");
  CHECK(version_of("{") == "");
}

TEST_CASE("DEL and GC: lenient about what they do not need") {
  std::string problem;
  auto lenient = [&](const std::string& text) {
    problem.clear();
    return parse_config_lenient(text, problem);
  };
  // A config ADD refuses (code 7) still gives DEL its version, name and logging.
  for (const std::string text : {
           R"({"cniVersion":"1.0.0","name":"k8s","logFile":"/tmp/w.log","capture":{"outbondPort":1}})",
           R"({"cniVersion":"1.0.0","name":"k8s","logFile":"/tmp/w.log","kubernetes":{}})",
           R"({"cniVersion":"1.0.0","name":"k8s","logFile":"/tmp/w.log","runtimeConfig":{"io.kubernetes.cri.pod-annotations":{"a":1}}})",
           R"({"cniVersion":"1.0.0","name":"k8s","logFile":"/tmp/w.log","prevResult":"x"})",
       }) {
    REQUIRE_FALSE(parse_config(text).ok());
    auto c = lenient(text);
    REQUIRE_MESSAGE(c.ok(), text);
    CHECK(c.value().cni_version == "1.0.0");
    CHECK(c.value().name == "k8s");
    CHECK(c.value().log_file == "/tmp/w.log");
    CHECK_FALSE(problem.empty());
  }
  CHECK(lenient(R"({"cniVersion":"1.0.0","capture":{"outbondPort":1}})").ok());
  CHECK(problem.find("outbondPort") != std::string::npos);
  // A bad logLevel is dropped on its own; the log file stays.
  auto level = lenient(R"({"cniVersion":"1.1.0","logLevel":"loud","logFile":"/tmp/w.log"})");
  REQUIRE(level.ok());
  CHECK(level.value().log_level == "info");
  CHECK(level.value().log_file == "/tmp/w.log");
  auto file = lenient(R"({"cniVersion":"1.1.0","logLevel":"debug","logFile":7})");
  REQUIRE(file.ok());
  CHECK(file.value().log_level == "debug");
  CHECK(file.value().log_file.empty());
  // Larger than ADD accepts: read whole, still parsed.
  std::string big = R"({"cniVersion":"0.4.0","pad":")" + std::string(1 << 20, 'x') + "\"}";
  auto b = lenient(big);
  REQUIRE(b.ok());
  CHECK(b.value().cni_version == "0.4.0");
  CHECK(problem.find("bytes") != std::string::npos);
  // A valid config: no problem, the full config.
  auto good = lenient(R"({"cniVersion":"1.0.0","capture":{"outboundPort":16001}})");
  REQUIRE(good.ok());
  CHECK(good.value().spec.outbound_port == 16001);
  CHECK(problem.empty());
  // Still refused: not JSON (6), an unsupported or missing version (1).
  REQUIRE_FALSE(lenient("{").ok());
  CHECK(lenient("{").error().code == 6);
  CHECK(lenient("[]").error().code == 6);
  CHECK(lenient(big.substr(0, big.size() - 2)).error().code == 6);
  CHECK(lenient(R"({"cniVersion":"2.0.0","kubernetes":{}})").error().code == 1);
  CHECK(lenient(R"({"capture":{"outbondPort":1}})").error().code == 1);
}

TEST_CASE("how much stdin each command reads") {
  CHECK(max_config_bytes(CniCommand::Add) == kMaxConfigBytes);
  CHECK(max_config_bytes(CniCommand::Check) == kMaxConfigBytes);
  CHECK(max_config_bytes(CniCommand::Del) == kMaxLenientConfigBytes);
  CHECK(max_config_bytes(CniCommand::Gc) == kMaxLenientConfigBytes);
  CHECK(max_config_bytes(std::nullopt) == kMaxConfigBytes);
  CHECK(kMaxLenientConfigBytes > kMaxConfigBytes);
}
