// The capture flags without root: layering (defaults, config file, flags,
// environment), messages naming the flag, and the small parsers.
#include "frontend/capture_flags.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <doctest/doctest.h>

#include "rules/spec_fields_samples.h"

namespace weir {
namespace {

// Parses `args` (without the program name) with the flags bound.
Result<CaptureSpec> build_from(std::vector<std::string> args, CaptureFlagOptions opts = {}) {
  CLI::App app;
  CaptureFlags flags;
  flags.bind(app, opts);
  std::vector<const char*> argv{"test"};
  for (const std::string& a : args) argv.push_back(a.c_str());
  app.parse(static_cast<int>(argv.size()), argv.data());
  return flags.build();
}

std::string temp_file(const std::string& name, const std::string& text) {
  const std::string path = "/tmp/weir-flags-test-" + std::to_string(::getpid()) + "-" + name;
  std::ofstream(path) << text;
  return path;
}

TEST_CASE("no flags give the spec defaults") {
  Result<CaptureSpec> s = build_from({});
  REQUIRE(s.ok());
  CHECK(*s == CaptureSpec{});
}

TEST_CASE("flags set their fields; lists take commas and repeats") {
  Result<CaptureSpec> s = build_from({"--outbound-port", "15101", "--proxy-uid", "1337,1338", "--proxy-uid", "2000",
                                      "--inbound-ports", "8080,9000-9100", "--outbound-cidrs", "*",
                                      "--exclude-outbound-cidrs", "fd00:1::/64", "--ip-families", "ipv6",
                                      "--inbound-mode", "tproxy", "--tproxy-mark", "0x100", "--redirect-dns",
                                      "--dns-servers", "fd00::53", "--drop-invalid", "--inbound-tunnel-port", "0"});
  REQUIRE_MESSAGE(s.ok(), (s.ok() ? "" : s.error().message));
  CHECK(s->outbound_port == 15101);
  CHECK(s->proxy_uids == std::vector<uint32_t>{1337, 1338, 2000});
  CHECK(s->proxy_gids == s->proxy_uids);  // GIDs follow the UIDs
  REQUIRE(s->inbound_ports);
  CHECK(*s->inbound_ports == std::vector<PortRange>{{8080, 8080}, {9000, 9100}});
  CHECK_FALSE(s->outbound_cidrs.has_value());
  CHECK(s->exclude_outbound_cidrs.size() == 1);
  CHECK(s->ip_families == IpFamilies::V6);
  CHECK(s->mode == InboundMode::Tproxy);
  CHECK(s->tproxy_mark == 0x100);
  CHECK(s->dns.capture);
  CHECK_FALSE(s->dns.capture_all);
  CHECK(s->dns.servers.size() == 1);
  CHECK(s->drop_invalid);
  CHECK(s->inbound_tunnel_port == 0);
}

TEST_CASE("--proxy-gid overrides the GIDs that follow the UIDs") {
  Result<CaptureSpec> s = build_from({"--proxy-uid", "2102", "--proxy-gid", "3000"});
  REQUIRE(s.ok());
  CHECK(s->proxy_uids == std::vector<uint32_t>{2102});
  CHECK(s->proxy_gids == std::vector<uint32_t>{3000});
}

TEST_CASE("config file first, then only the flags given") {
  const std::string path = temp_file("spec.json", R"({"outboundPort": 15111, "inboundPort": 15222, "dropInvalid": true})");
  Result<CaptureSpec> s = build_from({"--config", path, "--inbound-port", "15333"});
  std::remove(path.c_str());
  REQUIRE_MESSAGE(s.ok(), (s.ok() ? "" : s.error().message));
  CHECK(s->outbound_port == 15111);  // from the file
  CHECK(s->inbound_port == 15333);   // the flag wins
  CHECK(s->drop_invalid);            // not given as a flag: the file's value stays
}

TEST_CASE("a flag fixes what the config file alone gets wrong; the file's GIDs stay") {
  const std::string clash = temp_file("clash.json", R"({"outboundPort": 15006})");
  Result<CaptureSpec> s = build_from({"--config", clash, "--inbound-port", "15007"});
  REQUIRE_MESSAGE(s.ok(), (s.ok() ? "" : s.error().message));
  CHECK(s->outbound_port == 15006);
  CHECK(s->inbound_port == 15007);
  // Without the flag the clash is still refused, by name.
  Result<CaptureSpec> bad = build_from({"--config", clash});
  std::remove(clash.c_str());
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message.find("outboundPort and inboundPort") != std::string::npos);

  const std::string gids = temp_file("gids.json", R"({"proxyUids": [2102], "proxyGids": [3000]})");
  Result<CaptureSpec> g = build_from({"--config", gids, "--proxy-uid", "2103"});
  std::remove(gids.c_str());
  REQUIRE(g.ok());
  CHECK(g->proxy_uids == std::vector<uint32_t>{2103});
  CHECK(g->proxy_gids == std::vector<uint32_t>{3000});

  // Set in the file even when equal to its UIDs: still the file's.
  const std::string same = temp_file("same.json", R"({"proxyUids": [1337], "proxyGids": [1337]})");
  Result<CaptureSpec> e = build_from({"--config", same, "--proxy-uid", "1500"});
  std::remove(same.c_str());
  REQUIRE(e.ok());
  CHECK(e->proxy_uids == std::vector<uint32_t>{1500});
  CHECK(e->proxy_gids == std::vector<uint32_t>{1337});
}

TEST_CASE("config file errors name the file") {
  const std::string path = temp_file("bad.json", R"({"noSuchKey": 1})");
  Result<CaptureSpec> s = build_from({"--config", path});
  std::remove(path.c_str());
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().message.find(path) != std::string::npos);
  CHECK(s.error().message.find("noSuchKey") != std::string::npos);
  Result<CaptureSpec> missing = build_from({"--config", "/nonexistent/weir.json"});
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().kind == ErrorKind::Io);
}

TEST_CASE("errors name the flag and the value") {
  struct Case {
    std::vector<std::string> args;
    std::string flag, value;
  };
  const Case cases[] = {
      {{"--outbound-port", "0"}, "--outbound-port", "0"},
      {{"--outbound-port", "8000-8100"}, "--outbound-port", "8000-8100"},
      {{"--inbound-ports", "70000"}, "--inbound-ports", "70000"},
      {{"--exclude-outbound-cidrs", "198.18.0.0/33"}, "--exclude-outbound-cidrs", "198.18.0.0/33"},
      {{"--proxy-uid", "x"}, "--proxy-uid", "x"},
      {{"--ip-families", "ipv5"}, "--ip-families", "ipv5"},
      {{"--inbound-mode", "nat"}, "--inbound-mode", "nat"},
      {{"--tproxy-route-table", "-1"}, "--tproxy-route-table", "-1"},
      {{"--dns-servers", "198.18.0.53"}, "--dns-servers", "--redirect-dns"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.args[0]);
    Result<CaptureSpec> s = build_from(c.args);
    REQUIRE_FALSE(s.ok());
    CHECK(s.error().message.rfind(c.flag, 0) == 0);
    CHECK(s.error().message.find(c.value) != std::string::npos);
  }
}

TEST_CASE("environment variables with a prefix; the command line wins") {
  ::setenv("WEIRTEST_OUTBOUND_PORT", "15101", 1);
  ::setenv("WEIRTEST_INBOUND_PORT", "15106", 1);
  ::setenv("WEIRTEST_REDIRECT_DNS", "true", 1);
  ::setenv("WEIRTEST_EXCLUDE_OUTBOUND_PORTS", "443,8443", 1);
  Result<CaptureSpec> s = build_from({"--inbound-port", "15206"}, {.env_prefix = "WEIRTEST_"});
  Result<CaptureSpec> no_env = build_from({}, {});
  ::unsetenv("WEIRTEST_OUTBOUND_PORT");
  ::unsetenv("WEIRTEST_INBOUND_PORT");
  ::unsetenv("WEIRTEST_REDIRECT_DNS");
  ::unsetenv("WEIRTEST_EXCLUDE_OUTBOUND_PORTS");
  REQUIRE_MESSAGE(s.ok(), (s.ok() ? "" : s.error().message));
  CHECK(s->outbound_port == 15101);
  CHECK(s->inbound_port == 15206);
  CHECK(s->dns.capture);
  CHECK(s->exclude_outbound_ports == std::vector<PortRange>{{443, 443}, {8443, 8443}});
  REQUIRE(no_env.ok());
  CHECK(*no_env == CaptureSpec{});  // without a prefix the environment is ignored
}

TEST_CASE("any_given") {
  CLI::App app;
  CaptureFlags flags;
  flags.bind(app);
  const char* none[] = {"test"};
  app.parse(1, none);
  CHECK_FALSE(flags.any_given());
  CLI::App app2;
  CaptureFlags flags2;
  flags2.bind(app2);
  const char* some[] = {"test", "--drop-invalid"};
  app2.parse(2, some);
  CHECK(flags2.any_given());
}

TEST_CASE("parse_u32_value") {
  CHECK(*parse_u32_value("--mark", "1337") == 1337);
  CHECK(*parse_u32_value("--mark", "0x539") == 0x539);
  CHECK(*parse_u32_value("--mark", "4294967295") == 0xffffffffu);
  for (const char* bad : {"", "0x", "-1", "4294967296", "12a", "0x1ffffffff"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_u32_value("--mark", bad).ok());
  }
}

TEST_CASE("read_resolv_conf") {
  const std::string path = temp_file("resolv.conf",
                                     "# comment\nsearch svc.cluster.local\nnameserver 198.18.0.53\n"
                                     "nameserver fd00::53%eth0\nnameserver 198.18.0.53\noptions ndots:5\n");
  Result<std::vector<Cidr>> r = read_resolv_conf(path);
  std::remove(path.c_str());
  REQUIRE(r.ok());
  REQUIRE(r->size() == 2);  // duplicates dropped
  CHECK(format_cidr((*r)[0]) == "198.18.0.53/32");
  CHECK(format_cidr((*r)[1]) == "fd00::53/128");

  const std::string empty = temp_file("empty.conf", "search x\n");
  Result<std::vector<Cidr>> e = read_resolv_conf(empty);
  std::remove(empty.c_str());
  CHECK_FALSE(e.ok());
  CHECK_FALSE(read_resolv_conf("/nonexistent/resolv.conf").ok());
}

}  // namespace
}  // namespace weir

// ---- Every field of the table, through its flag and its variable ----

namespace weir {
namespace {

const SpecField& field_of(const std::string& key) {
  const SpecField* f = find_spec_field(key);
  REQUIRE(f != nullptr);
  return *f;
}

// The arguments that give `text` through the field's flag.
std::vector<std::string> flag_args(const SpecField& f, const std::string& text) {
  std::vector<std::string> args;
  if (f.arity == FieldArity::Switch) {
    args.push_back("--" + f.flag + (*parse_bool_text("", text) ? "" : "=false"));
  } else {
    args = {"--" + f.flag, text};
  }
  if (f.key == "dns.servers") args.push_back("--redirect-dns");  // servers need DNS capture on
  return args;
}

std::string after(const std::string& message, const std::string& what) {
  REQUIRE_MESSAGE(message.rfind(what + ": ", 0) == 0, message, " should start with ", what);
  return message.substr(what.size() + 2);
}

TEST_CASE("every field: its flag and its WEIR_ variable give what its text gives, or the same error") {
  for (const auto& sample : testing::field_samples()) {
    CAPTURE(sample.key);
    const SpecField& f = field_of(sample.key);
    const std::string env = flag_env_name("WEIRTEST_", f.flag);
    for (const std::string& text : sample.texts) {
      CAPTURE(text);
      Result<CaptureSpec> by_flag = build_from(flag_args(f, text));
      REQUIRE_MESSAGE(by_flag.ok(), by_flag.error().message);
      CHECK(f.get_json(*by_flag) == sample.value);

      ::setenv(env.c_str(), text.c_str(), 1);
      if (f.key == "dns.servers") ::setenv("WEIRTEST_REDIRECT_DNS", "true", 1);
      Result<CaptureSpec> by_env = build_from({}, {.env_prefix = "WEIRTEST_"});
      ::unsetenv(env.c_str());
      ::unsetenv("WEIRTEST_REDIRECT_DNS");
      REQUIRE_MESSAGE(by_env.ok(), by_env.error().message);
      CHECK(f.get_json(*by_env) == sample.value);
      CHECK(*by_env == *by_flag);
    }
    if (f.arity != FieldArity::Switch) {
      Result<CaptureSpec> bad = build_from({"--" + f.flag, sample.bad});
      REQUIRE_FALSE(bad.ok());
      CHECK(after(bad.error().message, "--" + f.flag) == sample.error);
    }
    ::setenv(env.c_str(), sample.bad.c_str(), 1);
    Result<CaptureSpec> bad_env = build_from({}, {.env_prefix = "WEIRTEST_"});
    ::unsetenv(env.c_str());
    REQUIRE_FALSE(bad_env.ok());
    CHECK(after(bad_env.error().message, env) == sample.error);
  }
}

TEST_CASE("--tproxy-mark and WEIR_TPROXY_MARK take hex, as weir.dev/tproxyMark and the JSON do") {
  Result<CaptureSpec> s = build_from({"--tproxy-mark", "0x539", "--backend", "iptables"});
  REQUIRE(s.ok());
  CHECK(s->tproxy_mark == 0x539);
  CHECK(s->backend == FilterBackend::Iptables);
  ::setenv("WEIRTEST_BACKEND", "nftables", 1);
  Result<CaptureSpec> e = build_from({}, {.env_prefix = "WEIRTEST_"});
  ::unsetenv("WEIRTEST_BACKEND");
  REQUIRE(e.ok());
  CHECK(e->backend == FilterBackend::Nftables);
}

TEST_CASE("--config: a directory, a FIFO, an unreadable or too large file get a clear error") {
  const std::string dir = "/tmp/weir-flags-test-" + std::to_string(::getpid()) + "-dir";
  REQUIRE(::mkdir(dir.c_str(), 0700) == 0);
  Result<CaptureSpec> d = build_from({"--config", dir});
  ::rmdir(dir.c_str());
  REQUIRE_FALSE(d.ok());
  CHECK(d.error().kind == ErrorKind::Io);
  CHECK(d.error().message == "--config: " + dir + ": is a directory, not a regular file");

  const std::string fifo = "/tmp/weir-flags-test-" + std::to_string(::getpid()) + "-fifo";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  Result<CaptureSpec> f = build_from({"--config", fifo});  // must not wait for a writer
  ::unlink(fifo.c_str());
  REQUIRE_FALSE(f.ok());
  CHECK(f.error().message.find("a FIFO, not a regular file") != std::string::npos);

  const std::string big = temp_file("big.json", "{\"excludeOutboundPorts\": \"" + std::string(5u << 20, ' ') + "\"}");
  Result<CaptureSpec> b = build_from({"--config", big});
  std::remove(big.c_str());
  REQUIRE_FALSE(b.ok());
  CHECK(b.error().message.find("larger than the 4194304 bytes weir reads") != std::string::npos);

  if (::geteuid() != 0) {  // root reads anything
    const std::string locked = temp_file("locked.json", "{}");
    ::chmod(locked.c_str(), 0);
    Result<CaptureSpec> l = build_from({"--config", locked});
    std::remove(locked.c_str());
    REQUIRE_FALSE(l.ok());
    CHECK(l.error().message.find("Permission denied") != std::string::npos);
  }
  ::setenv("WEIRTEST_CONFIG", "/nonexistent/weir.json", 1);
  Result<CaptureSpec> env = build_from({}, {.env_prefix = "WEIRTEST_"});
  ::unsetenv("WEIRTEST_CONFIG");
  REQUIRE_FALSE(env.ok());
  CHECK(env.error().message.find("/nonexistent/weir.json") != std::string::npos);
}

TEST_CASE("read_small_file reads a regular file whole") {
  const std::string path = temp_file("small.txt", "hello\n");
  Result<std::string> r = read_small_file(path, 100);
  Result<std::string> tight = read_small_file(path, 3);
  std::remove(path.c_str());
  REQUIRE(r.ok());
  CHECK(*r == "hello\n");
  CHECK_FALSE(tight.ok());
}

}  // namespace
}  // namespace weir
