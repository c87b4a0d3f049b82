#include "cni/node/installer.h"

#include <sys/stat.h>
#include <unistd.h>

#include <ctime>
#include <fstream>
#include <sstream>

#include "cni/agent_readiness.h"
#include "cni/config.h"
#include "cni/node/node_files.h"

namespace weir::node {
namespace {

using ojson = nlohmann::ordered_json;

std::string describe(const FileChange& c, const std::string& dir) {
  return (c.op == FileChange::Op::Write ? "wrote " : "removed ") + dir + "/" + c.name;
}

std::optional<std::string> slurp(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

std::string readiness_file(const NodeOptions& o) { return o.state_dir + "/node-ready"; }
std::string reconcile_state_file(const NodeOptions& o) { return o.state_dir + "/node-reconcile.json"; }

Result<ojson> weir_entry(const NodeOptions& o) {
  ojson entry = ojson::object();
  entry["type"] = kPluginType;
  if (o.plugin_config) {
    if (!o.plugin_config->is_object()) return Error{ErrorKind::InvalidArgument, "--plugin-config: expected a JSON object", 0};
    for (const auto& [k, v] : o.plugin_config->items()) {
      if (k == "type" && v != kPluginType) {
        return Error{ErrorKind::InvalidArgument, "--plugin-config: \"type\" must be \"weir-cni\", got " + v.dump(), 0};
      }
      if (k == "name" || k == "cniVersion") continue;  // the list's, injected by the runtime
      entry[k] = v;
    }
  }
  if (!entry.contains("capabilities") || !entry["capabilities"].is_object()) entry["capabilities"] = ojson::object();
  entry["capabilities"][cni::kPodAnnotationsCapability] = true;
  if (!entry.contains(cni::kAgentReadinessKey)) {
    entry[cni::kAgentReadinessKey] = {{"file", readiness_file(o)}, {"maxAgeSeconds", cni::kDefaultReadinessMaxAgeSeconds}};
  }
  // The entry must be one weir-cni accepts, or every pod would fail: check it as ADD would.
  ojson probe = entry;
  probe["cniVersion"] = "1.0.0";
  probe["name"] = "weir-node-check";
  auto parsed = cni::parse_config(probe.dump());
  if (!parsed.ok()) return Error{ErrorKind::InvalidSpec, "--plugin-config: weir-cni would refuse this entry: " + parsed.error().msg, 0};
  return entry;
}

namespace {
bool known_intact(const NodeOptions& o, const InstalledBinaries* known, const std::string& dir) {
  if (!known || !known->source || fingerprint(o.plugin_binary) != known->source) return false;
  auto it = known->copies.find(dir);
  return it != known->copies.end() && fingerprint(dir + "/" + kPluginType) == it->second;
}
}  // namespace

bool binaries_intact(const NodeOptions& o, const InstalledBinaries* known) {
  for (const auto& d : o.cni_bin_dirs) {
    if (known_intact(o, known, d)) continue;
    if (!same_content(o.plugin_binary, d + "/" + kPluginType)) return false;
  }
  return true;
}

Result<InstallOutcome> install_once(const NodeOptions& o, const ojson& entry, InstalledBinaries* known) {
  InstallOutcome out;
  for (const auto& d : o.cni_bin_dirs) {
    if (known_intact(o, known, d)) continue;
    auto source = fingerprint(o.plugin_binary);
    auto copied = install_binary(o.plugin_binary, d);
    if (!copied.ok()) return copied.error().wrap("install " + o.plugin_binary + " into " + d);
    if (known) {
      known->source = source;
      if (auto fp = fingerprint(d + "/" + kPluginType)) known->copies[d] = *fp;
    }
    if (copied.value()) {
      auto v = run_version(d + "/" + kPluginType);
      if (!v.ok()) return v.error().wrap("the installed copy in " + d + " does not run");
      out.changes.push_back("copied weir-cni to " + d + " (VERSION: " + v.value() + ")");
    }
  }
  auto files = read_conf_dir(o.cni_conf_dir);
  if (!files.ok()) return files.error();
  auto plan = plan_install(files.value(), o.mode, entry);
  if (!plan.ok()) return plan.error().wrap("plan the config in " + o.cni_conf_dir);
  out.skipped = plan->skipped;
  if (!plan->primary) {
    out.waiting = true;
    return out;
  }
  out.primary = plan->primary->name;
  out.config_file = plan->config_file;
  if (Status s = apply_changes(o.cni_conf_dir, plan->changes); !s.ok()) return s.error().wrap("write weir's entry");
  for (const auto& c : plan->changes) out.changes.push_back(describe(c, o.cni_conf_dir));
  return out;
}

Result<UninstallOutcome> uninstall(const NodeOptions& o) {
  UninstallOutcome out;
  auto files = read_conf_dir(o.cni_conf_dir);
  if (!files.ok()) return files.error();
  auto plan = plan_uninstall(files.value());
  if (Status s = apply_changes(o.cni_conf_dir, plan.changes); !s.ok()) return s.error().wrap("take weir's entry out");
  for (const auto& c : plan.changes) out.changes.push_back(describe(c, o.cni_conf_dir));
  // Read again: the binary goes only if nothing names it now, whoever wrote it.
  auto after = read_conf_dir(o.cni_conf_dir);
  if (!after.ok()) return after.error();
  auto check = plan_uninstall(after.value());
  for (const auto& c : check.changes) out.kept_binary_for.push_back(c.name);
  for (const auto& n : check.still_named_by) out.kept_binary_for.push_back(n);
  if (!out.kept_binary_for.empty()) return out;
  for (const auto& d : o.cni_bin_dirs) {
    struct stat st{};
    if (::stat((d + "/" + kPluginType).c_str(), &st) != 0) continue;
    if (Status s = remove_binary(d); !s.ok()) return s.error();
    out.changes.push_back("removed " + d + "/" + kPluginType);
  }
  return out;
}

ojson node_status(const NodeOptions& o) {
  ojson st = ojson::object();
  ojson bins = ojson::array();
  for (const auto& d : o.cni_bin_dirs) {
    const std::string path = d + "/" + kPluginType;
    ojson b = {{"dir", d}, {"installed", ::access(path.c_str(), X_OK) == 0}};
    if (!o.plugin_binary.empty() && ::access(o.plugin_binary.c_str(), R_OK) == 0) b["sameAsPluginBinary"] = same_content(o.plugin_binary, path);
    bins.push_back(b);
  }
  st["binaries"] = bins;
  st["confDir"] = o.cni_conf_dir;
  auto files = read_conf_dir(o.cni_conf_dir);
  if (!files.ok()) {
    st["confDirError"] = files.error().message;
  } else {
    std::vector<std::string> skipped;
    auto primary = select_primary(files.value(), &skipped);
    st["primary"] = primary ? ojson(primary->name) : ojson(nullptr);
    st["skipped"] = skipped;
    ojson with = ojson::array();
    for (const auto& f : files.value()) {
      auto k = conf_kind(f.name);
      int n = k ? count_entries(*k, f.text) : 0;
      if (n > 0) with.push_back({{"file", f.name}, {"entries", n}});
    }
    st["filesWithWeirEntry"] = with;
    bool own = false;
    for (const auto& f : files.value()) own = own || f.name == kOwnFileName;
    st["ownFile"] = own;
    st["entryInPrimary"] = primary && count_entries(primary->kind, primary->text) == 1;
    // What the runtime actually uses: the own file when present, else the primary.
    st["entryInUse"] = own || (primary && count_entries(primary->kind, primary->text) == 1);
  }
  const std::string rf = readiness_file(o);
  ojson ready = {{"file", rf}};
  if (auto text = slurp(rf)) {
    struct stat fs{};
    ::stat(rf.c_str(), &fs);
    ready["ageSeconds"] = static_cast<long long>(::time(nullptr) - fs.st_mtime);
    try {
      ready["document"] = ojson::parse(*text);
    } catch (const nlohmann::json::exception&) {
      ready["document"] = *text;
    }
    auto problem = cni::readiness_problem({rf, cni::kDefaultReadinessMaxAgeSeconds}, text, static_cast<double>(ready["ageSeconds"].get<long long>()));
    ready["ready"] = !problem.has_value();
  } else {
    ready["ready"] = false;
    ready["document"] = nullptr;
  }
  st["readiness"] = ready;
  if (auto text = slurp(reconcile_state_file(o))) {
    try {
      st["lastReconcile"] = ojson::parse(*text);
    } catch (const nlohmann::json::exception&) {
      st["lastReconcile"] = nullptr;
    }
  } else {
    st["lastReconcile"] = nullptr;
  }
  return st;
}

}  // namespace weir::node
