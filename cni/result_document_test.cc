#include "cni/result_document.h"

#include <cerrno>

#include <doctest/doctest.h>

using namespace weir::cni;
using nlohmann::json;

namespace {
json converted(const json& prev, const std::string& version) {
  auto r = convert_result(prev, version);
  REQUIRE(r.ok());
  return std::move(r).value();
}
}  // namespace

TEST_CASE("results convert between versions") {
  json v1 = json::parse(R"({"cniVersion":"1.0.0","interfaces":[{"name":"eth0"}],
    "ips":[{"address":"198.18.0.5/24","gateway":"198.18.0.1","interface":0},{"address":"fd00::5/64"}],
    "routes":[{"dst":"0.0.0.0/0"}],"dns":{}})");
  json old = converted(v1, "0.3.1");
  CHECK(old["cniVersion"] == "0.3.1");
  CHECK(old["ips"][0]["version"] == "4");
  CHECK(old["ips"][1]["version"] == "6");
  CHECK(old["routes"] == v1["routes"]);
  CHECK(old["interfaces"] == v1["interfaces"]);
  json back = converted(old, "1.0.0");
  CHECK(back == v1);
  CHECK(converted(v1, "1.1.0")["ips"][0].contains("version") == false);
  CHECK(converted(v1, "1.0.0") == v1);  // unchanged when versions agree
}

TEST_CASE("a prevResult weir cannot pass on is code 7 naming the field") {
  auto error_of = [](const char* text, const char* version) {
    auto r = convert_result(json::parse(text), version);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == 7);
    return r.error().msg;
  };
  CHECK(error_of(R"({"ips":[{"address":5}]})", "0.4.0").find("prevResult.ips[0].address: expected a string, got number") == 0);
  CHECK(error_of(R"({"ips":[{"address":"198.18.0.1/24"},{"address":null}]})", "1.0.0").find("prevResult.ips[1].address") == 0);
  CHECK(error_of(R"({"ips":[{}]})", "0.3.1").find("prevResult.ips[0].address: missing") == 0);
  CHECK(error_of(R"({"ips":{}})", "0.3.1").find("prevResult.ips: expected an array") == 0);
  CHECK(error_of(R"({"ips":[7]})", "1.0.0").find("prevResult.ips[0]: expected an object") == 0);
  CHECK(error_of(R"({"cniVersion":"0.2.0","ip4":{"ip":"198.18.0.5/24"}})", "1.0.0").find("prevResult.cniVersion") == 0);
  CHECK(error_of(R"({"ip4":{"ip":"198.18.0.5/24"}})", "1.0.0").find("prevResult.ip4") == 0);
  CHECK(error_of(R"({"ip6":{"ip":"fd00::5/64"}})", "0.4.0").find("prevResult.ip6") == 0);
  CHECK(error_of(R"({"cniVersion":1})", "0.4.0").find("prevResult.cniVersion") == 0);
  // What weir does not read passes through, whatever it holds.
  CHECK(converted(json::parse(R"({"ips":[{"address":"fd00::5/64","x":null}],"dns":7})"), "0.3.0")["ips"][0]["version"] == "6");
  CHECK(converted(json::parse(R"({"cniVersion":"0.3.0","ips":null})"), "1.0.0")["ips"].is_null());
}

TEST_CASE("error and version documents") {
  json e = error_document("0.4.0", CniError{7, "bad", "why"});
  CHECK(e == json{{"cniVersion", "0.4.0"}, {"code", 7}, {"msg", "bad"}, {"details", "why"}});
  CHECK(error_document("", CniError{6, "x", ""})["cniVersion"] == "1.1.0");
  // details is always there, "" when there is none.
  CHECK(error_document("1.0.0", CniError{4, "x", ""}) == json{{"cniVersion", "1.0.0"}, {"code", 4}, {"msg", "x"}, {"details", ""}});
  CHECK(error_document("2.0.0", CniError{1, "x", ""})["cniVersion"] == "1.1.0");
  // Answered in another version than the config's: details say which, and why.
  CHECK(error_document("2.0.0", CniError{1, "x", "weir supports ..."})["details"] ==
        "weir supports ...; answered in cniVersion 1.1.0, the newest weir speaks: the config's cniVersion 2.0.0 is not one weir speaks");
  CHECK(error_document("", CniError{7, "x", ""})["details"] ==
        "answered in cniVersion 1.1.0, the newest weir speaks: the config's cniVersion could not be read");
  json v = version_document("0.3.1");
  CHECK(v["cniVersion"] == "0.3.1");
  CHECK(v["supportedVersions"] == json{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"});
  // A version weir does not speak (or none) is answered with the newest it does.
  CHECK(version_document("2.0.0")["cniVersion"] == "1.1.0");
  CHECK(version_document("0.2.0")["cniVersion"] == "1.1.0");
  CHECK(version_document("")["cniVersion"] == "1.1.0");
}

TEST_CASE("errors: a missing privilege is not a refused rule") {
  auto perm = from_error(weir::Error{weir::ErrorKind::Kernel, "enter netns /x: Operation not permitted", EPERM}, "install");
  CHECK(perm.code == 106);
  CHECK(perm.details.find("permission") != std::string::npos);
  CHECK(from_error(weir::Error{weir::ErrorKind::Io, "open: Permission denied", EACCES}, "read").code == 106);
  CHECK(from_error(weir::Error{weir::ErrorKind::Kernel, "commit: Invalid argument", EINVAL}, "install").code == 101);
  CHECK(from_error(weir::Error{weir::ErrorKind::LockTimeout, "busy", 0}, "install").code == 11);
}
