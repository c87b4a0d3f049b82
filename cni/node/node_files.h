// The file side effects of weir-node: reading the conf dir, writing configs
// atomically, copying the plugin binary atomically and asking it its VERSION.
// A runtime may read a config or exec the binary at any moment, so nothing is
// ever written in place: a temporary file in the same directory is written,
// fsynced, given the old file's mode and owner, and renamed over it.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "cni/node/conf_files.h"
#include "rules/error.h"

namespace weir::node {

// The config files of `dir` (names conf_kind() accepts, regular files, at most
// 1 MiB each, the rest skipped). Io when the directory cannot be read.
Result<std::vector<ConfFile>> read_conf_dir(const std::string& dir);

// Writes `text` to dir/name through a temporary file and rename(2), then
// fsyncs the directory. Mode and owner: those of dir/mode_from when given,
// else of dir/name when it exists, else 0644. On failure the temporary file is
// removed and dir/name is untouched.
Status write_file_atomic(const std::string& dir, const std::string& name, const std::string& text,
                         const std::string& mode_from = "");

// Applies an install or uninstall plan's changes in order; stops at the first
// failure (what was applied stays: each change leaves a usable directory).
Status apply_changes(const std::string& dir, const std::vector<FileChange>& changes);

// What identifies a file's content without reading it: any write in place
// changes the mtime, any rename the inode.
struct FileFingerprint {
  unsigned long long dev = 0, ino = 0;
  long long size = 0, mtime_sec = 0, mtime_nsec = 0;
  bool operator==(const FileFingerprint&) const = default;
};
std::optional<FileFingerprint> fingerprint(const std::string& path);

// Copies `source` to bin_dir/weir-cni atomically (0755, fsync, rename) unless
// an identical copy is already there. Returns whether it copied.
Result<bool> install_binary(const std::string& source, const std::string& bin_dir);

// Whether `installed` has the same bytes as `source`.
bool same_content(const std::string& source, const std::string& installed);

// Runs `binary` as a runtime runs VERSION (CNI_COMMAND=VERSION, a 1.0.0 config
// on stdin), at most `timeout_ms`; its stdout. Error when it does not exit 0
// with a JSON document listing supportedVersions.
Result<std::string> run_version(const std::string& binary, int timeout_ms = 5000);

// Removes bin_dir/weir-cni; succeeds when it is not there.
Status remove_binary(const std::string& bin_dir);

}  // namespace weir::node
