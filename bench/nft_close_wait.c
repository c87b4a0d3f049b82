/* weir_nft_close_wait: where closing an nf_tables netlink socket waits, and
 * when. Not a test: a probe that bench/report.py runs (root; into namespaces
 * the report created, never this one).
 *
 *   weir_nft_close_wait NS_A NS_B ROUNDS
 *
 * Each round, in namespace A (paths to /var/run/netns/...): a batch creating
 * table `inet wbclose` with a nat output base chain, then on a second socket
 * a batch deleting it; the close of each socket is timed. Then:
 *   - "create, close"          close after a batch that only creates;
 *   - "delete, close"          close right after a batch that deleted;
 *   - "delete, 50 ms, close"   the same, waiting 50 ms before the close;
 *   - "other netns, close"     right after A's delete, a socket in namespace
 *                              B that only creates is closed first: does A's
 *                              pending work make B's close wait?
 * While each close runs, a second thread samples the closing thread's kernel
 * stack (/proc/self/task/TID/stack) every 200 us; the functions seen in the
 * longest close are printed, so the wait's place in the kernel is named.
 * Output: one line per case, "case median_us max_us", then "stack: ...". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/table.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int enter(const char* path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) {
    perror(path);
    exit(1);
  }
  close(fd);
  return 0;
}

static struct mnl_socket* sock_open(void) {
  struct mnl_socket* nl = mnl_socket_open(NETLINK_NETFILTER);
  if (!nl || mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
    perror("netlink");
    exit(1);
  }
  return nl;
}

/* One batch: create (table + nat output base chain) or delete the table. */
static void batch(struct mnl_socket* nl, int create) {
  static char buf[16384];
  static uint32_t seq = 1;
  struct mnl_nlmsg_batch* b = mnl_nlmsg_batch_start(buf, sizeof buf);
  nftnl_batch_begin(mnl_nlmsg_batch_current(b), seq++);
  mnl_nlmsg_batch_next(b);
  struct nftnl_table* t = nftnl_table_alloc();
  nftnl_table_set_str(t, NFTNL_TABLE_NAME, "wbclose");
  uint32_t last = seq;
  struct nlmsghdr* h = nftnl_table_nlmsg_build_hdr(mnl_nlmsg_batch_current(b),
                                                   create ? NFT_MSG_NEWTABLE : NFT_MSG_DELTABLE, NFPROTO_INET,
                                                   (create ? NLM_F_CREATE : 0) | NLM_F_ACK, seq++);
  nftnl_table_nlmsg_build_payload(h, t);
  nftnl_table_free(t);
  mnl_nlmsg_batch_next(b);
  if (create) {
    struct nftnl_chain* c = nftnl_chain_alloc();
    nftnl_chain_set_str(c, NFTNL_CHAIN_TABLE, "wbclose");
    nftnl_chain_set_str(c, NFTNL_CHAIN_NAME, "out");
    nftnl_chain_set_str(c, NFTNL_CHAIN_TYPE, "nat");
    nftnl_chain_set_u32(c, NFTNL_CHAIN_HOOKNUM, NF_INET_LOCAL_OUT);
    nftnl_chain_set_s32(c, NFTNL_CHAIN_PRIO, -100);
    last = seq;
    h = nftnl_chain_nlmsg_build_hdr(mnl_nlmsg_batch_current(b), NFT_MSG_NEWCHAIN, NFPROTO_INET,
                                    NLM_F_CREATE | NLM_F_ACK, seq++);
    nftnl_chain_nlmsg_build_payload(h, c);
    nftnl_chain_free(c);
    mnl_nlmsg_batch_next(b);
  }
  nftnl_batch_end(mnl_nlmsg_batch_current(b), seq++);
  mnl_nlmsg_batch_next(b);
  if (mnl_socket_sendto(nl, mnl_nlmsg_batch_head(b), mnl_nlmsg_batch_size(b)) < 0) {
    perror("sendto");
    exit(1);
  }
  mnl_nlmsg_batch_stop(b);
  /* Read acks until the last message's. */
  for (;;) {
    char rbuf[8192];
    ssize_t got = mnl_socket_recvfrom(nl, rbuf, sizeof rbuf);
    if (got < 0) {
      perror("recv");
      exit(1);
    }
    int n = (int)got;
    for (struct nlmsghdr* r = (struct nlmsghdr*)rbuf; mnl_nlmsg_ok(r, n); r = mnl_nlmsg_next(r, &n)) {
      if (r->nlmsg_type == NLMSG_ERROR) {
        const struct nlmsgerr* e = mnl_nlmsg_get_payload(r);
        if (e->error) {
          fprintf(stderr, "batch (%s): %s\n", create ? "create" : "delete", strerror(-e->error));
          exit(1);
        }
        if (r->nlmsg_seq == last) return;
      }
    }
  }
}

/* The stack sampler. */
static atomic_int sampling;
static pid_t target_tid;
static char longest[4096], current[4096];

static void* sampler(void* arg) {
  (void)arg;
  char path[64];
  snprintf(path, sizeof path, "/proc/self/task/%d/stack", (int)target_tid);
  while (atomic_load(&sampling) >= 0) {
    if (atomic_load(&sampling) == 1) {
      int fd = open(path, O_RDONLY);
      if (fd >= 0) {
        char buf[4096];
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n > 0) {
          buf[n] = 0;
          /* Keep the sample that is not the sampler's own read path. */
          if (strstr(buf, "close") || strstr(buf, "netlink_release") || strstr(buf, "flush"))
            memcpy(current, buf, (size_t)n + 1);
        }
      }
    }
    usleep(200);
  }
  return NULL;
}

static double longest_close = 0;
static double timed_close(struct mnl_socket* nl) {
  current[0] = 0;
  atomic_store(&sampling, 1);
  double t0 = now_us();
  mnl_socket_close(nl);
  double d = now_us() - t0;
  atomic_store(&sampling, 0);
  if (d > longest_close && current[0]) {
    longest_close = d;
    memcpy(longest, current, sizeof longest);
  }
  return d;
}

static int cmp(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}
static void report(const char* name, double* v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp);
  printf("%s\t%.1f\t%.1f\n", name, v[n / 2], v[n - 1]);
}

int main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: weir_nft_close_wait NS_A_PATH NS_B_PATH ROUNDS\n");
    return 2;
  }
  int rounds = atoi(argv[3]);
  if (rounds < 1 || rounds > 1000) return 2;
  int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  target_tid = (pid_t)syscall(SYS_gettid);
  pthread_t th;
  pthread_create(&th, NULL, sampler, NULL);
  double* v[4];
  for (int k = 0; k < 4; ++k) v[k] = calloc((size_t)rounds, sizeof(double));
  for (int i = 0; i < rounds; ++i) {
    enter(argv[1]);
    struct mnl_socket* a = sock_open();
    batch(a, 1);
    v[0][i] = timed_close(a);                    /* create, close */
    a = sock_open();
    batch(a, 0);
    v[1][i] = timed_close(a);                    /* delete, close */
    a = sock_open();
    batch(a, 1);
    mnl_socket_close(a);
    a = sock_open();
    batch(a, 0);
    usleep(50000);
    v[2][i] = timed_close(a);                    /* delete, 50 ms, close */
    a = sock_open();
    batch(a, 1);
    mnl_socket_close(a);
    a = sock_open();
    batch(a, 0);                                 /* A deleted; its socket stays open */
    enter(argv[2]);
    struct mnl_socket* b = sock_open();
    batch(b, 1);
    v[3][i] = timed_close(b);                    /* B only created */
    mnl_socket_close(a);
    b = sock_open();
    batch(b, 0);
    mnl_socket_close(b);
    usleep(20000);
  }
  if (setns(self, CLONE_NEWNET) != 0) abort(); /* back where we started */
  atomic_store(&sampling, -1);
  pthread_join(th, NULL);
  report("create, close", v[0], rounds);
  report("delete, close", v[1], rounds);
  report("delete, 50 ms, close", v[2], rounds);
  report("other netns, close", v[3], rounds);
  printf("stack:");
  for (char* line = strtok(longest, "\n"); line; line = strtok(NULL, "\n")) {
    char* fn = strchr(line, ']');
    fn = fn ? fn + 2 : line;
    char* plus = strchr(fn, '+');
    if (plus) *plus = 0;
    printf(" %s", fn);
  }
  printf("\n");
  return 0;
}
