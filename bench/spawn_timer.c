/* weir_bench_spawn: the process starter bench/report.py times every command
 * with, so that all of them are started alike: fork, setns into the target
 * namespace in the child when asked (weir-cni enters CNI_NETNS itself), stdin
 * from a file, stdout/stderr to /dev/null, exec, wait. Only fork..wait is
 * timed (CLOCK_MONOTONIC). It also creates and removes network namespaces the
 * way `ip netns add/delete` does (a bind mount of a new namespace at
 * /var/run/netns/NAME), without starting a process per namespace.
 *
 * Requests on stdin, one per line, fields separated by tabs; one answer line
 * each:
 *   run NETNS|- STDIN|- NENV [K=V]... ARGV...  ->  "<ns> <exit status>"
 *   mkns PATH                                    ->  "0 0" or "0 <errno>"
 *   rmns PATH                                    ->  "0 0" or "0 <errno>"
 * The exit status is 126 when setns failed (the command never ran), 127 when
 * exec failed, 128+N when killed by signal N. Not a test; root only. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char** environ;

enum { kMaxFields = 512 };

static long long now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int run(char** f, int n) {
  if (n < 4) return -1;
  const char* netns = f[1];
  const char* in = f[2];
  int nenv = atoi(f[3]);
  if (nenv < 0 || 4 + nenv >= n) return -1;
  char** env_add = f + 4;
  char** argv = f + 4 + nenv;
  int ns = strcmp(netns, "-") ? open(netns, O_RDONLY | O_CLOEXEC) : -1;
  int infd = strcmp(in, "-") ? open(in, O_RDONLY | O_CLOEXEC) : open("/dev/null", O_RDONLY | O_CLOEXEC);
  int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
  if ((strcmp(netns, "-") && ns < 0) || infd < 0 || null < 0) {
    printf("0 125\n");
    goto out;
  }
  long long t0 = now_ns();
  pid_t pid = fork();
  if (pid == 0) {
    if (ns >= 0 && setns(ns, CLONE_NEWNET) != 0) _exit(126);
    for (int i = 0; i < nenv; ++i) putenv(env_add[i]);
    dup2(infd, 0);
    dup2(null, 1);
    dup2(null, 2);
    execvp(argv[0], argv);
    _exit(127);
  }
  int status = 0;
  if (pid > 0)
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  long long t1 = now_ns();
  printf("%lld %d\n", t1 - t0,
         pid < 0 ? 125 : WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
out:
  if (ns >= 0) close(ns);
  if (infd >= 0) close(infd);
  if (null >= 0) close(null);
  return 0;
}

/* As `ip netns add`: a file, and a new namespace bind-mounted on it (made in
 * a child, so this process stays where it is). */
static int mkns(const char* path) {
  int fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
  if (fd < 0) return errno;
  close(fd);
  pid_t pid = fork();
  if (pid == 0) {
    if (unshare(CLONE_NEWNET) != 0) _exit(1);
    if (mount("/proc/self/ns/net", path, "none", MS_BIND, NULL) != 0) _exit(2);
    _exit(0);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    unlink(path);
    return EIO;
  }
  return 0;
}

static int rmns(const char* path) {
  if (umount2(path, MNT_DETACH) != 0 && errno != EINVAL) return errno;
  return unlink(path) == 0 ? 0 : errno;
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  char* line = NULL;
  size_t cap = 0;
  ssize_t len;
  while ((len = getline(&line, &cap, stdin)) > 0) {
    if (line[len - 1] == '\n') line[--len] = 0;
    char* f[kMaxFields + 1];
    int n = 0;
    for (char* p = line; p && n < kMaxFields;) {
      f[n++] = p;
      p = strchr(p, '\t');
      if (p) *p++ = 0;
    }
    f[n] = NULL;
    if (n >= 1 && !strcmp(f[0], "run")) {
      if (run(f, n) != 0) printf("0 124\n");
    } else if (n == 2 && !strcmp(f[0], "mkns")) {
      printf("0 %d\n", mkns(f[1]));
    } else if (n == 2 && !strcmp(f[0], "rmns")) {
      printf("0 %d\n", rmns(f[1]));
    } else {
      printf("0 124\n");
    }
  }
  free(line);
  return 0;
}
