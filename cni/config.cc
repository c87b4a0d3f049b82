#include "cni/config.h"

#include "cni/bounded_json.h"
#include "frontend/logging.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string_view>

namespace weir::cni {

namespace {

CniError invalid(const std::string& msg, const std::string& details = "") {
  return CniError{code::kInvalidConfig, msg, details};
}

const char* json_type(const nlohmann::json& j) { return j.type_name(); }

}  // namespace

std::optional<CniCommand> parse_command(const std::string& text) {
  static const std::pair<const char*, CniCommand> kNames[] = {
      {"ADD", CniCommand::Add},         {"DEL", CniCommand::Del},       {"CHECK", CniCommand::Check},
      {"VERSION", CniCommand::Version}, {"STATUS", CniCommand::Status}, {"GC", CniCommand::Gc},
  };
  for (const auto& [name, c] : kNames) {
    if (text == name) return c;
  }
  return std::nullopt;
}

const char* to_string(CniCommand c) {
  switch (c) {
    case CniCommand::Add: return "ADD";
    case CniCommand::Del: return "DEL";
    case CniCommand::Check: return "CHECK";
    case CniCommand::Version: return "VERSION";
    case CniCommand::Status: return "STATUS";
    case CniCommand::Gc: return "GC";
  }
  return "?";
}

CniEnv read_env(const std::function<const char*(const char*)>& getenv) {
  auto get = [&](const char* name) {
    const char* v = getenv(name);
    return std::string(v ? v : "");
  };
  return CniEnv{get("CNI_COMMAND"), get("CNI_CONTAINERID"), get("CNI_NETNS"),
                get("CNI_IFNAME"), get("CNI_ARGS"), get("CNI_PATH")};
}

std::optional<CniError> check_env(CniCommand command, const CniEnv& env) {
  std::vector<std::pair<const char*, const std::string*>> needed;
  switch (command) {
    case CniCommand::Add:
    case CniCommand::Check:
      needed = {{"CNI_CONTAINERID", &env.container_id}, {"CNI_NETNS", &env.netns}, {"CNI_IFNAME", &env.ifname}};
      break;
    case CniCommand::Del:
      needed = {{"CNI_CONTAINERID", &env.container_id}, {"CNI_IFNAME", &env.ifname}};
      break;
    default:
      break;
  }
  for (const auto& [name, value] : needed) {
    if (value->empty()) {
      return CniError{code::kInvalidEnvironment, std::string(name) + " is required for " + to_string(command) + " but is empty or unset", ""};
    }
  }
  return std::nullopt;
}

// Plain string_view splitting: this runs on every invocation, and a stream
// would cost the plugin a locale set-up for a few dozen bytes.
std::map<std::string, std::string> parse_cni_args(const std::string& text) {
  std::map<std::string, std::string> out;
  std::string_view rest = text;
  while (!rest.empty()) {
    size_t semi = rest.find(';');
    std::string_view item = rest.substr(0, semi);
    rest = semi == std::string_view::npos ? std::string_view() : rest.substr(semi + 1);
    size_t eq = item.find('=');
    if (eq == std::string_view::npos || eq == 0) continue;
    out[std::string(item.substr(0, eq))] = std::string(item.substr(eq + 1));
  }
  return out;
}

std::string PodRef::display() const {
  if (ns.empty() && name.empty()) return "-";
  return (ns.empty() ? "?" : ns) + "/" + (name.empty() ? "?" : name);
}

PodRef pod_from_args(const std::map<std::string, std::string>& args) {
  auto get = [&](const char* k) {
    auto it = args.find(k);
    return it == args.end() ? std::string() : it->second;
  };
  return PodRef{get("K8S_POD_NAMESPACE"), get("K8S_POD_NAME"), get("K8S_POD_UID")};
}

const std::vector<std::string>& supported_versions() {
  static const std::vector<std::string> kVersions{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"};
  return kVersions;
}

bool is_supported_version(const std::string& v) {
  const auto& all = supported_versions();
  return std::find(all.begin(), all.end(), v) != all.end();
}

int compare_versions(const std::string& a, const std::string& b) {
  auto parts = [](const std::string& v) {
    std::vector<long> out;
    const char* p = v.c_str();
    while (*p && out.size() < 3) {
      char* end = nullptr;
      out.push_back(std::strtol(p, &end, 10));
      p = std::strchr(end, '.');
      if (!p) break;
      ++p;
    }
    out.resize(3, 0);
    return out;
  };
  auto pa = parts(a), pb = parts(b);
  for (size_t i = 0; i < 3; ++i) {
    if (pa[i] != pb[i]) return pa[i] < pb[i] ? -1 : 1;
  }
  return 0;
}

namespace {

std::string versions_list() {
  std::string s;
  for (const auto& v : supported_versions()) s += (s.empty() ? "" : ", ") + v;
  return s;
}

std::optional<CniError> read_string(const nlohmann::json& j, const char* key, std::string& out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  if (!it->is_string()) return invalid(std::string(key) + ": expected a string, got " + json_type(*it));
  out = it->get<std::string>();
  return std::nullopt;
}

std::optional<CniError> read_annotations(const nlohmann::json& config, PluginConfig& out) {
  auto rc = config.find("runtimeConfig");
  if (rc == config.end() || rc->is_null()) return std::nullopt;
  if (!rc->is_object()) return invalid(std::string("runtimeConfig: expected an object, got ") + json_type(*rc));
  auto an = rc->find(kPodAnnotationsCapability);
  if (an == rc->end() || an->is_null()) return std::nullopt;
  const std::string where = std::string("runtimeConfig[\"") + kPodAnnotationsCapability + "\"]";
  if (!an->is_object()) return invalid(where + ": expected an object, got " + json_type(*an));
  std::map<std::string, std::string> annotations;
  for (const auto& [k, v] : an->items()) {
    if (!v.is_string()) return invalid(where + ": annotation " + k + ": expected a string, got " + json_type(v));
    annotations[k] = v.get<std::string>();
  }
  out.annotations = std::move(annotations);
  return std::nullopt;
}

CniError too_large(size_t limit) {
  // The reader stops just past the limit, so the real size is unknown.
  return invalid("network config on stdin is larger than " + std::to_string(limit) + " bytes, the most weir accepts");
}

// Code 6 unless stdin is one JSON object nested at most kMaxJsonDepth deep
// (with DeepValues::Drop, deeper values are left out instead).
CniResult<BoundedJson> parse_object(const std::string& text, DeepValues deep = DeepValues::Refuse) {
  auto parsed = parse_bounded_json(text, deep);
  if (!parsed.ok()) return CniError{code::kDecodingFailure, "network config on stdin is not valid JSON", parsed.error().message};
  if (!parsed->value.is_object()) {
    return CniError{code::kDecodingFailure, std::string("network config on stdin: expected a JSON object, got ") + json_type(parsed->value), ""};
  }
  return std::move(parsed).value();
}

// Code 1 unless cniVersion is one weir speaks.
std::optional<CniError> read_version(const nlohmann::json& j, PluginConfig& c) {
  auto v = j.find("cniVersion");
  if (v == j.end() || !v->is_string()) {
    return CniError{code::kIncompatibleVersion, "cniVersion is missing or not a string", "weir supports " + versions_list()};
  }
  c.cni_version = v->get<std::string>();
  if (!is_supported_version(c.cni_version)) {
    return CniError{code::kIncompatibleVersion, "cniVersion " + c.cni_version + " is not supported",
                    "weir supports " + versions_list()};
  }
  return std::nullopt;
}

std::optional<CniError> read_log_level(const nlohmann::json& j, std::string& level) {
  std::string text = level;
  if (auto e = read_string(j, "logLevel", text)) return *e;
  if (!is_log_level(text)) return invalid("logLevel: \"" + text + "\" is not one of " + log_levels_text());
  level = text;
  return std::nullopt;
}

}  // namespace

size_t max_config_bytes(std::optional<CniCommand> command) {
  if (command == CniCommand::Del || command == CniCommand::Gc) return kMaxLenientConfigBytes;
  return kMaxConfigBytes;
}

namespace {

CniResult<PluginConfig> config_from_json(const nlohmann::json& j) {
  PluginConfig c;
  if (auto e = read_version(j, c)) return *e;
  if (auto e = read_string(j, "name", c.name)) return *e;
  if (auto e = read_log_level(j, c.log_level)) return *e;
  if (auto e = read_string(j, "logFile", c.log_file)) return *e;

  if (auto it = j.find("excludeNamespaces"); it != j.end() && !it->is_null()) {
    if (!it->is_array()) return invalid(std::string("excludeNamespaces: expected an array of strings, got ") + json_type(*it));
    c.exclude_namespaces.clear();
    for (const auto& ns : *it) {
      if (!ns.is_string()) return invalid(std::string("excludeNamespaces: expected an array of strings, found ") + json_type(ns));
      c.exclude_namespaces.push_back(ns.get<std::string>());
    }
  }
  if (auto it = j.find("captureWithoutAnnotations"); it != j.end() && !it->is_null()) {
    if (!it->is_boolean()) return invalid(std::string("captureWithoutAnnotations: expected a boolean, got ") + json_type(*it));
    c.capture_without_annotations = it->get<bool>();
  }
  if (j.contains("kubernetes")) {
    return invalid("kubernetes: looking pods up in the Kubernetes API is not implemented yet",
                   "remove the key; weir reads pod annotations from runtimeConfig");
  }
  if (auto it = j.find("capture"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) return invalid(std::string("capture: expected an object, got ") + json_type(*it));
    try {
      if (Status s = merge_json(c.spec, *it); !s.ok()) return invalid("capture: " + s.error().message);
      c.proxy_gids_set = it->contains("proxyGids");
    } catch (const nlohmann::json::exception& e) {
      return invalid(std::string("capture: ") + e.what());
    }
  }
  if (auto it = j.find("prevResult"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) return invalid(std::string("prevResult: expected an object, got ") + json_type(*it));
    c.prev_result = *it;
  }
  if (auto e = read_annotations(j, c)) return *e;
  auto readiness = parse_agent_readiness(j);
  if (!readiness.ok()) return readiness.error();
  c.agent_readiness = std::move(readiness.value());
  return c;
}

}  // namespace

CniResult<PluginConfig> parse_config(const std::string& text) {
  if (text.size() > kMaxConfigBytes) return too_large(kMaxConfigBytes);
  auto parsed = parse_object(text);
  if (!parsed.ok()) return parsed.error();
  return config_from_json(parsed.value().value);
}

CniResult<PluginConfig> parse_config_lenient(const std::string& text, std::string& problem) {
  if (text.size() > kMaxLenientConfigBytes) return too_large(kMaxLenientConfigBytes);
  auto parsed = parse_object(text, DeepValues::Drop);
  if (!parsed.ok()) return parsed.error();
  const nlohmann::json& j = parsed.value().value;
  if (parsed.value().dropped) {
    problem = "values nested deeper than " + std::to_string(kMaxJsonDepth) + " levels were left unread";
  } else if (text.size() > kMaxConfigBytes) {
    const CniError e = too_large(kMaxConfigBytes);
    problem = e.msg;
  } else {
    auto strict = config_from_json(j);
    if (strict.ok() || strict.error().code != code::kInvalidConfig) return strict;
    const CniError& e = strict.error();
    problem = e.msg + (e.details.empty() ? "" : " (" + e.details + ")");
  }
  PluginConfig c;
  if (auto e = read_version(j, c)) return *e;
  // Each on its own, a bad one ignored: a bad logLevel must not cost the log file.
  std::string name, log_file;
  if (!read_string(j, "name", name)) c.name = name;
  if (!read_string(j, "logFile", log_file)) c.log_file = log_file;
  (void)read_log_level(j, c.log_level);
  return c;
}

std::string version_of(const std::string& text) { return top_level_string(text, "cniVersion"); }

}  // namespace weir::cni
