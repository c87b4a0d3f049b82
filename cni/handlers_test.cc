// The CNI contract of weir-cni, against a fake kernel: decisions, error codes,
// the lenient DEL, what is touched and what is not. No root.
#include "cni/handlers.h"

#include <cerrno>

#include <doctest/doctest.h>

using namespace weir;
using namespace weir::cni;
using nlohmann::json;

namespace {

// Records every call; fails the way it is told to.
class FakeKernel : public KernelOps {
 public:
  std::vector<std::string> calls;  // "open /p", "apply /p", ...
  std::optional<Error> netns_error;  // what opening the namespace fails with, in every operation
  std::optional<Error> apply_error, probe_error;
  PlanDiff drift;
  std::vector<ForeignRules> foreign;
  std::optional<CaptureSpec> applied, checked;
  std::vector<std::string> apply_warnings;

  Status open_netns(const NetnsTarget& t) override {
    calls.push_back("open " + t.netns_path);
    CHECK_FALSE(t.allow_own_netns);
    if (netns_error) return *netns_error;
    return {};
  }
  Result<ApplyReport> apply(const NetnsTarget& t, const CaptureSpec& spec) override {
    calls.push_back("apply " + t.netns_path);
    CHECK_FALSE(t.allow_own_netns);
    if (netns_error) return *netns_error;
    if (apply_error) return *apply_error;
    applied = spec;
    return ApplyReport{"iptables", {}, apply_warnings};
  }
  Result<CheckReport> check(const NetnsTarget& t, const CaptureSpec& spec) override {
    calls.push_back("check " + t.netns_path);
    if (netns_error) return *netns_error;
    checked = spec;
    CheckReport r;
    r.diff = drift;
    r.foreign = foreign;
    return r;
  }
  Status clean(const NetnsTarget& t) override {
    calls.push_back("clean " + t.netns_path);
    CHECK_FALSE(t.allow_own_netns);
    if (netns_error) return *netns_error;
    return {};
  }
  Status probe(const CaptureSpec&) override {
    calls.push_back("probe");
    if (probe_error) return *probe_error;
    return {};
  }
};

const json kPrev = json::parse(R"({"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/var/run/netns/p"}],
  "ips":[{"address":"198.18.0.5/24","interface":0}]})");

json stdin_doc(const std::string& version = "1.0.0", const json& annotations = json{{"weir.dev/capture", "enabled"}}) {
  json j = {{"cniVersion", version}, {"name", "k8s"}, {"type", "weir-cni"}, {"prevResult", kPrev}};
  if (!annotations.is_null()) j["runtimeConfig"] = {{"io.kubernetes.cri.pod-annotations", annotations}};
  return j;
}

CniEnv env(const std::string& command, const std::string& netns = "/var/run/netns/p") {
  return CniEnv{command, "c1", netns, "eth0", "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web", ""};
}

CniAnswer run(FakeKernel& k, const std::string& command, const json& doc, const std::string& netns = "/var/run/netns/p") {
  return run_cni(env(command, netns), doc.dump(), k);
}

int code_of(const CniAnswer& a) {
  REQUIRE_FALSE(a.ok);
  return a.document.at("code").get<int>();
}

const Error kGone{ErrorKind::NetnsNotFound, "open network namespace /var/run/netns/p: No such file or directory", ENOENT};
const Error kOwn{ErrorKind::OwnNetns, "refusing to change the network namespace weir itself runs in", 0};
const Error kNotNetns{ErrorKind::InvalidArgument, "/var/run/netns/p is not a network namespace", 0};
const Error kEmfile{ErrorKind::InvalidArgument, "open network namespace /var/run/netns/p: Too many open files", EMFILE};
const Error kEmfileIo{ErrorKind::Io, "open network namespace /var/run/netns/p: Too many open files", EMFILE};

}  // namespace

TEST_CASE("ADD: a captured pod gets the rules once and prevResult back") {
  FakeKernel k;
  CniAnswer a = run(k, "ADD", stdin_doc("0.4.0"));
  REQUIRE(a.ok);
  CHECK(k.calls == std::vector<std::string>{"apply /var/run/netns/p"});  // ops opens the namespace, once
  CHECK(a.decision == "captured");
  CHECK(a.pod.display() == "shop/web");
  CHECK(a.document["cniVersion"] == "0.4.0");
  CHECK(a.document["ips"][0]["version"] == "4");
  CHECK(a.document["interfaces"] == kPrev["interfaces"]);
  REQUIRE(k.applied);
  CHECK(*k.applied == CaptureSpec{});
}

TEST_CASE("ADD: a skipped pod touches nothing but still needs its namespace") {
  FakeKernel k;
  CniAnswer a = run(k, "ADD", stdin_doc("1.0.0", json::object()));
  REQUIRE(a.ok);
  CHECK(a.decision == "skipped");
  CHECK(k.calls == std::vector<std::string>{"open /var/run/netns/p"});
  CHECK(a.document == [] { json j = kPrev; return j; }());

  for (const auto& [error, code] : {std::pair{kGone, 100}, {kOwn, 102}, {kNotNetns, 4}}) {
    FakeKernel bad;
    bad.netns_error = error;
    CHECK(code_of(run(bad, "ADD", stdin_doc("1.0.0", json::object()))) == code);
    FakeKernel captured;
    captured.netns_error = error;
    CHECK(code_of(run(captured, "ADD", stdin_doc())) == code);
    CHECK_FALSE(captured.applied);
  }
}

TEST_CASE("ADD: the namespace's problems come before a bad annotation's") {
  FakeKernel k;
  k.netns_error = kOwn;
  CHECK(code_of(run(k, "ADD", stdin_doc("1.0.0", {{"weir.dev/capture", "yes"}}))) == 102);
  FakeKernel ok;
  CniAnswer a = run(ok, "ADD", stdin_doc("1.0.0", {{"weir.dev/capture", "enabled"}, {"weir.dev/outboundPort", "x"}}));
  CHECK(code_of(a) == 7);
  CHECK(a.document["msg"].get<std::string>().find("weir.dev/outboundPort") != std::string::npos);
  CHECK(a.decision == "failed");
  CHECK_FALSE(ok.applied);
}

TEST_CASE("ADD: errors of the kernel map to their codes") {
  auto code_for = [](Error e) {
    FakeKernel k;
    k.apply_error = e;
    return code_of(run(k, "ADD", stdin_doc()));
  };
  CHECK(code_for(Error{ErrorKind::Kernel, "commit nat: Invalid argument", EINVAL}) == 101);
  CHECK(code_for(Error{ErrorKind::Unsupported, "no ip6tables", 0}) == 103);
  CHECK(code_for(Error{ErrorKind::LockTimeout, "lock", 0}) == 11);
  CHECK(code_for(Error{ErrorKind::Kernel, "enter netns: Operation not permitted", EPERM}) == 106);
  CHECK(code_for(Error{ErrorKind::Io, "open netns: Permission denied", EACCES}) == 106);
  CHECK(code_for(Error{ErrorKind::Internal, "bug", 0}) == 105);
}

TEST_CASE("ADD: apply's warnings are passed on to the log") {
  FakeKernel k;
  k.apply_warnings = {"lo is down"};
  CniAnswer a = run(k, "ADD", stdin_doc());
  REQUIRE(a.ok);
  CHECK(a.warnings == std::vector<std::string>{"/var/run/netns/p: lo is down"});
}

TEST_CASE("ADD and CHECK require prevResult and the CNI_* variables") {
  json no_prev = stdin_doc();
  no_prev.erase("prevResult");
  FakeKernel k;
  CHECK(code_of(run(k, "ADD", no_prev)) == 7);
  CHECK(code_of(run(k, "CHECK", no_prev)) == 7);
  CniEnv e = env("ADD");
  e.ifname.clear();
  CniAnswer a = run_cni(e, stdin_doc().dump(), k);
  CHECK(code_of(a) == 4);
  CHECK(a.document["msg"].get<std::string>().find("CNI_IFNAME") != std::string::npos);
  CHECK(code_of(run(k, "ADD", stdin_doc(), "")) == 4);
  CHECK(k.calls.empty());
}

TEST_CASE("ADD: a malformed prevResult is code 7 naming the field, before anything changes") {
  // cniVersion < 1.0.0 derives "version" from each address: a number, a null
  // or a missing address used to throw after the rules were in (code 105).
  for (const json& address : {json(5), json(nullptr)}) {
    json doc = stdin_doc("0.4.0");
    doc["prevResult"]["ips"][0]["address"] = address;
    FakeKernel k;
    CniAnswer a = run(k, "ADD", doc);
    CHECK(code_of(a) == 7);
    CHECK(a.document["msg"].get<std::string>().find("prevResult.ips[0].address") != std::string::npos);
    CHECK(k.calls.empty());
  }
  for (const json& ips : {json("198.18.0.5/24"), json::array({json(1)})}) {
    json doc = stdin_doc("1.0.0");
    doc["prevResult"]["ips"] = ips;
    FakeKernel k;
    CniAnswer a = run(k, "ADD", doc);
    CHECK(code_of(a) == 7);
    CHECK(a.document["msg"].get<std::string>().find("prevResult.ips") != std::string::npos);
    CHECK(k.calls.empty());
  }
}

TEST_CASE("ADD: a 0.2.0-shaped prevResult is refused, not relabelled") {
  json doc = stdin_doc("1.0.0");
  doc["prevResult"] = json::parse(R"({"cniVersion":"0.2.0","ip4":{"ip":"198.18.0.5/24","gateway":"198.18.0.1"},"dns":{}})");
  FakeKernel k;
  CniAnswer a = run(k, "ADD", doc);
  CHECK(code_of(a) == 7);
  CHECK(a.document["msg"].get<std::string>().find("prevResult") != std::string::npos);
  CHECK(k.calls.empty());
  doc["prevResult"].erase("cniVersion");  // the shape alone says it
  CniAnswer b = run(k, "ADD", doc);
  CHECK(code_of(b) == 7);
  CHECK(b.document["msg"].get<std::string>().find("prevResult.ip4") != std::string::npos);
}

TEST_CASE("CHECK: drift is 104 with the diff, so is another capture tool's rules; skipped pods pass; needs 0.4.0") {
  FakeKernel k;
  CniAnswer ok = run(k, "CHECK", stdin_doc());
  REQUIRE(ok.ok);
  CHECK(ok.document == json{{"cniVersion", "1.0.0"}});
  CHECK(k.calls == std::vector<std::string>{"check /var/run/netns/p"});

  FakeKernel drifted;
  drifted.drift.lines.push_back(DiffLine{DiffLine::Missing, "ipv4 nat WEIR_OUTPUT rule 1", "-A WEIR_OUTPUT -j RETURN", ""});
  CniAnswer d = run(drifted, "CHECK", stdin_doc());
  CHECK(code_of(d) == 104);
  CHECK(d.document["details"].get<std::string>().find("WEIR_OUTPUT") != std::string::npos);
  CHECK(d.decision == "drifted");

  // weir's rules right, another capture tool's there too: 104, naming them.
  FakeKernel twice;
  twice.foreign = {ForeignRules{"Istio", "legacy iptables", "nat", {"ISTIO_OUTPUT"}}};
  CniAnswer t = run(twice, "CHECK", stdin_doc());
  CHECK(code_of(t) == 104);
  CHECK(t.document["msg"].get<std::string>().find("another capture tool's rules") != std::string::npos);
  CHECK(t.document["details"].get<std::string>().find("Istio's ISTIO_OUTPUT in legacy iptables nat") == 0);
  CHECK(t.decision == "captured twice");

  FakeKernel skipped;
  CHECK(run(skipped, "CHECK", stdin_doc("1.0.0", json::object())).ok);
  CHECK(skipped.calls == std::vector<std::string>{"open /var/run/netns/p"});

  FakeKernel old;
  CHECK(code_of(run(old, "CHECK", stdin_doc("0.3.1"))) == 1);
  CHECK(old.calls.empty());

  FakeKernel missing;
  missing.netns_error = kGone;
  CHECK(code_of(run(missing, "CHECK", stdin_doc())) == 100);
}

TEST_CASE("DEL: cleans whatever the annotations say, and is lenient about the config") {
  FakeKernel k;
  CniAnswer a = run(k, "DEL", stdin_doc("1.0.0", {{"weir.dev/capture", "disabled"}}));
  REQUIRE(a.ok);
  CHECK(a.document == json{{"cniVersion", "1.0.0"}});
  CHECK(k.calls == std::vector<std::string>{"clean /var/run/netns/p"});  // opened once, by ops

  // What ADD refuses with 7 is a warning for DEL, which goes on.
  json bad = stdin_doc("1.0.0", {{"weir.dev/capture", "yes"}});
  bad["capture"] = {{"outbondPort", 1}};
  bad["kubernetes"] = json::object();
  bad["logLevel"] = "loud";
  bad.erase("prevResult");
  FakeKernel lenient;
  CniAnswer l = run(lenient, "DEL", bad);
  REQUIRE(l.ok);
  CHECK(lenient.calls == std::vector<std::string>{"clean /var/run/netns/p"});
  REQUIRE(l.warnings.size() == 1);
  CHECK(l.warnings[0].find("ignoring a config problem") != std::string::npos);

  // Still errors: not JSON (6), an unsupported or missing cniVersion (1).
  FakeKernel strict;
  CHECK(code_of(run_cni(env("DEL"), "{", strict)) == 6);
  CHECK(code_of(run_cni(env("DEL"), "[]", strict)) == 6);
  CHECK(code_of(run(strict, "DEL", stdin_doc("2.0.0"))) == 1);
  CHECK(code_of(run(strict, "DEL", json{{"type", "weir-cni"}})) == 1);
  CHECK(strict.calls.empty());
}

TEST_CASE("DEL: an empty CNI_NETNS succeeds at once, even without CNI_IFNAME") {
  FakeKernel k;
  CniEnv e = env("DEL", "");
  e.ifname.clear();
  CniAnswer a = run_cni(e, stdin_doc().dump(), k);
  REQUIRE(a.ok);
  CHECK(a.reason == "CNI_NETNS is empty");
  CHECK(k.calls.empty());
}

TEST_CASE("DEL: only a namespace that is gone succeeds; other failures to open it are reported") {
  for (const Error& gone : {kGone, kNotNetns, Error{ErrorKind::InvalidArgument, "open: Not a directory", ENOTDIR}}) {
    FakeKernel k;
    k.netns_error = gone;
    CniAnswer a = run(k, "DEL", stdin_doc());
    CHECK(a.ok);
    CHECK(a.decision == "nothing to do");
  }
  // EMFILE says nothing about the namespace: the rules may still be there.
  FakeKernel emfile;
  emfile.netns_error = kEmfile;
  CHECK(code_of(run(emfile, "DEL", stdin_doc())) == 4);
  FakeKernel emfile_io;
  emfile_io.netns_error = kEmfileIo;
  CniAnswer io = run(emfile_io, "DEL", stdin_doc());
  CHECK(code_of(io) == 5);
  CHECK(io.document["msg"].get<std::string>().find("Too many open files") != std::string::npos);
  FakeKernel own;
  own.netns_error = kOwn;
  CHECK(code_of(run(own, "DEL", stdin_doc())) == 102);
  FakeKernel perm;
  perm.netns_error = Error{ErrorKind::Kernel, "enter netns: Operation not permitted", EPERM};
  CHECK(code_of(run(perm, "DEL", stdin_doc())) == 106);
}

TEST_CASE("STATUS and GC: 1.1.0 only; STATUS probes, GC touches nothing") {
  FakeKernel k;
  CHECK(run(k, "STATUS", stdin_doc("1.1.0")).document == json{{"cniVersion", "1.1.0"}});
  CHECK(k.calls == std::vector<std::string>{"probe"});
  k.probe_error = Error{ErrorKind::Unsupported, "libiptc: open the IPv4 nat table: Protocol not available", 0};
  CniAnswer bad = run(k, "STATUS", stdin_doc("1.1.0"));
  CHECK(code_of(bad) == 50);
  CHECK(bad.document["details"].get<std::string>().find("nat") != std::string::npos);
  CHECK(code_of(run(k, "STATUS", stdin_doc("1.0.0"))) == 1);

  FakeKernel gc;
  json lenient = stdin_doc("1.1.0");
  lenient["capture"] = "not an object";
  CniAnswer g = run(gc, "GC", lenient);
  REQUIRE(g.ok);
  CHECK(g.warnings.size() == 1);
  CHECK(gc.calls.empty());
  CHECK(code_of(run(gc, "GC", stdin_doc("1.0.0"))) == 1);
}

TEST_CASE("VERSION and unknown commands") {
  FakeKernel k;
  CniAnswer v = run_cni(CniEnv{"VERSION"}, R"({"cniVersion":"0.4.0"})", k);
  REQUIRE(v.ok);
  CHECK(v.document["cniVersion"] == "0.4.0");
  CHECK(v.document["supportedVersions"].size() == 5);
  CniAnswer u = run_cni(CniEnv{"FROB"}, R"({"cniVersion":"0.4.0"})", k);
  CHECK(code_of(u) == 4);
  CHECK(u.document["cniVersion"] == "0.4.0");
  CHECK(k.calls.empty());
}

TEST_CASE("a config over the size limit is answered in its own cniVersion") {
  json big = stdin_doc("1.0.0");
  big["padding"] = std::string(kMaxConfigBytes, 'x');
  std::string text = big.dump();
  text.resize(kMaxConfigBytes + 1);  // what main reads of it
  FakeKernel k;
  CniAnswer a = run_cni(env("ADD"), text, k);
  CHECK(code_of(a) == 7);
  CHECK(a.document["cniVersion"] == "1.0.0");
  // A cniVersion beyond the cut cannot be read: the newest weir speaks, and it says so.
  json late = {{"padding", std::string(kMaxConfigBytes, 'x')}, {"zz", "after"}};
  std::string late_text = late.dump();
  late_text.insert(late_text.size() - 1, R"(,"cniVersion":"1.0.0")");
  late_text.resize(kMaxConfigBytes + 1);
  CniAnswer b = run_cni(env("ADD"), late_text, k);
  CHECK(code_of(b) == 7);
  CHECK(b.document["cniVersion"] == "1.1.0");
  CHECK(b.document["details"].get<std::string>().find("answered in cniVersion 1.1.0") != std::string::npos);
  CHECK(k.calls.empty());
}

TEST_CASE("a deeply nested config gets an answer: 6 for ADD/CHECK, DEL goes on") {
  // 100,000 levels (200 KB): well within the size limit; copying or printing
  // it recursively would overflow the stack.
  const int depth = 100000;
  json doc = stdin_doc("1.0.0");
  std::string text = doc.dump();
  text.pop_back();
  text += R"(,"deep":)" + std::string(depth, '[') + std::string(depth, ']') + "}";
  REQUIRE(text.size() < kMaxConfigBytes);
  for (const char* command : {"ADD", "CHECK"}) {
    FakeKernel k;
    CniAnswer a = run_cni(env(command), text, k);
    CHECK(code_of(a) == 6);
    CHECK(a.document["cniVersion"] == "1.0.0");
    CHECK(k.calls.empty());
  }
  // In prevResult, where ADD would copy and print it.
  std::string prev_text = doc.dump();
  const std::string key = R"("prevResult":{)";
  prev_text.insert(prev_text.find(key) + key.size(), R"("deep":)" + std::string(depth, '[') + std::string(depth, ']') + ",");
  FakeKernel add;
  CHECK(code_of(run_cni(env("ADD"), prev_text, add)) == 6);
  FakeKernel del;
  CniAnswer d = run_cni(env("DEL"), prev_text, del);
  REQUIRE(d.ok);
  CHECK(del.calls == std::vector<std::string>{"clean /var/run/netns/p"});
  REQUIRE(d.warnings.size() == 1);
  CHECK(d.warnings[0].find("nested deeper") != std::string::npos);
  // Nesting within the bound is fine.
  json ok_doc = stdin_doc("1.0.0");
  json nested = json::array();
  for (int i = 0; i < 100; ++i) nested = json::array({nested});
  ok_doc["prevResult"]["deep"] = nested;
  FakeKernel fine;
  CHECK(run(fine, "ADD", ok_doc).ok);
}

TEST_CASE("the log settings come back even when the command fails") {
  json doc = stdin_doc("1.0.0", {{"weir.dev/capture", "yes"}});
  doc["logLevel"] = "debug";
  doc["logFile"] = "/tmp/x.log";
  FakeKernel k;
  CniAnswer a = run(k, "ADD", doc);
  CHECK(code_of(a) == 7);
  CHECK(a.log_level == "debug");
  CHECK(a.log_file == "/tmp/x.log");
}
