#include "cni/result.h"

#include <cerrno>

#include <doctest/doctest.h>

using namespace weir::cni;
using nlohmann::json;

TEST_CASE("results convert between versions") {
  json v1 = json::parse(R"({"cniVersion":"1.0.0","interfaces":[{"name":"eth0"}],
    "ips":[{"address":"198.18.0.5/24","gateway":"198.18.0.1","interface":0},{"address":"fd00::5/64"}],
    "routes":[{"dst":"0.0.0.0/0"}],"dns":{}})");
  json old = convert_result(v1, "0.3.1");
  CHECK(old["cniVersion"] == "0.3.1");
  CHECK(old["ips"][0]["version"] == "4");
  CHECK(old["ips"][1]["version"] == "6");
  CHECK(old["routes"] == v1["routes"]);
  CHECK(old["interfaces"] == v1["interfaces"]);
  json back = convert_result(old, "1.0.0");
  CHECK(back == v1);
  CHECK(convert_result(v1, "1.1.0")["ips"][0].contains("version") == false);
  CHECK(convert_result(v1, "1.0.0") == v1);  // unchanged when versions agree
}

TEST_CASE("error and version documents") {
  json e = error_document("0.4.0", CniError{7, "bad", "why"});
  CHECK(e == json{{"cniVersion", "0.4.0"}, {"code", 7}, {"msg", "bad"}, {"details", "why"}});
  CHECK(error_document("", CniError{6, "x", ""})["cniVersion"] == "1.1.0");
  // details is always there, "" when there is none.
  CHECK(error_document("1.0.0", CniError{4, "x", ""}) == json{{"cniVersion", "1.0.0"}, {"code", 4}, {"msg", "x"}, {"details", ""}});
  CHECK(error_document("2.0.0", CniError{1, "x", ""})["cniVersion"] == "1.1.0");
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
