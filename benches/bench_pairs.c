/* Paired, alternating whole-process timing of two commands A and B, for scripts/bench.
 *
 *   bench_pairs N [NAME=VALUE...] A [ARGS...] -- [NAME=VALUE...] B [ARGS...]
 *
 * Leading NAME=VALUE words of a side, as env(1) takes them, are set in that side's
 * environment only (the scale section runs A and B against two daemons, whose sockets
 * differ).
 *
 * Runs W warm-up pairs, then N pairs. Pair i runs A then B when i is even, B then A
 * when odd, so that drift in the machine's speed (another process, frequency, caches)
 * hits both alike; the median of the per-pair ratios A/B is then a figure that machine
 * noise mostly cancels out of. Each run is timed from just before posix_spawn to the
 * return of wait4 on CLOCK_MONOTONIC; its peak RSS is wait4's ru_maxrss.
 *
 * Build it static (gcc -O2 -static): Linux carries the old address space's peak RSS
 * over an exec (exec_mmap -> setmax_mm_hiwater_rss), and a vfork-style spawn execs
 * from the parent's address space, so a child's ru_maxrss is at least the spawning
 * process's own peak RSS. A static C launcher keeps that floor tiny; it is printed as
 * self_hwm_kib so that readers can check that it is below every child's figure.
 *
 * Every run's stdout must equal the first A run's stdout, with exit status 0; the
 * mismatches are counted as failures. Output: "key value" lines. Not part of mailtoken. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define WARMUP 30
#define OUTCAP 8192

struct run {
  double us;
  long rss_kib;
  int ok;
};

static char reference[OUTCAP];
static size_t reference_len = 0;
static int have_reference = 0;

/* The environment of a side: ours, with the side's leading NAME=VALUE words (which
 * are then skipped in *argvp) set. */
static char **side_env(char ***argvp) {
  char **argv = *argvp;
  int k = 0;
  while (argv[k] && argv[k][0] != '/' && strchr(argv[k], '=')) k++;
  if (k == 0) return environ;
  size_t n = 0;
  while (environ[n]) n++;
  char **env = calloc(n + k + 1, sizeof *env);
  if (!env) exit(70);
  size_t m = 0;
  for (size_t i = 0; i < n; i++) {
    int replaced = 0;
    for (int j = 0; j < k; j++) {
      size_t len = (size_t)(strchr(argv[j], '=') - argv[j]) + 1;
      if (strncmp(environ[i], argv[j], len) == 0) replaced = 1;
    }
    if (!replaced) env[m++] = environ[i];
  }
  for (int j = 0; j < k; j++) env[m++] = argv[j];
  env[m] = NULL;
  *argvp = argv + k;
  return env;
}

static struct run run_once(char **argv, char **envp) {
  struct run r = {0, 0, 0};
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0) {
    perror("pipe2");
    exit(70);
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, p[1], 1);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  pid_t pid;
  int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, envp);
  close(p[1]);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    fprintf(stderr, "bench_pairs: cannot run %s: %s\n", argv[0], strerror(rc));
    exit(70);
  }
  int status = 0;
  struct rusage ru;
  if (wait4(pid, &status, 0, &ru) < 0) {
    perror("wait4");
    exit(70);
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  char out[OUTCAP];
  size_t len = 0;
  ssize_t n;
  while (len < sizeof out && (n = read(p[0], out + len, sizeof out - len)) > 0) len += n;
  close(p[0]);
  r.us = (t1.tv_sec - t0.tv_sec) * 1e6 + (t1.tv_nsec - t0.tv_nsec) / 1e3;
  r.rss_kib = ru.ru_maxrss;
  int exited_ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  if (!have_reference && exited_ok && len > 0) {
    memcpy(reference, out, len);
    reference_len = len;
    have_reference = 1;
  }
  r.ok = exited_ok && have_reference && len == reference_len && memcmp(out, reference, len) == 0;
  return r;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double quantile(double *v, int n, double q) {
  qsort(v, n, sizeof *v, cmp_double);
  int i = (int)(q * (n - 1) + 0.5);
  return v[i];
}

static long self_hwm_kib(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long v = -1;
  while (f && fgets(line, sizeof line, f))
    if (sscanf(line, "VmHWM: %ld", &v) == 1) break;
  if (f) fclose(f);
  return v;
}

int main(int argc, char **argv) {
  int sep = 0;
  for (int i = 2; i < argc; i++)
    if (strcmp(argv[i], "--") == 0) {
      sep = i;
      break;
    }
  if (argc < 5 || sep < 3 || sep == argc - 1) {
    fputs("usage: bench_pairs N [NAME=VALUE...] A [ARGS...] -- [NAME=VALUE...] B [ARGS...]\n", stderr);
    return 64;
  }
  int n = atoi(argv[1]);
  if (n < 1) return 64;
  argv[sep] = NULL;
  char **a = argv + 2, **b = argv + sep + 1;
  char **ea = side_env(&a), **eb = side_env(&b);
  if (!a[0] || !b[0]) return 64;
  double *ta = calloc(n, sizeof *ta), *tb = calloc(n, sizeof *tb), *ratio = calloc(n, sizeof *ratio);
  double *ra = calloc(n, sizeof *ra), *rb = calloc(n, sizeof *rb);
  if (!ta || !tb || !ratio || !ra || !rb) return 70;
  int failures = 0;
  for (int i = -WARMUP; i < n; i++) {
    struct run x, y;
    if (i % 2 == 0) {
      x = run_once(a, ea);
      y = run_once(b, eb);
    } else {
      y = run_once(b, eb);
      x = run_once(a, ea);
    }
    if (i < 0) continue;
    failures += !x.ok + !y.ok;
    ta[i] = x.us;
    tb[i] = y.us;
    ratio[i] = x.us / y.us;
    ra[i] = x.rss_kib;
    rb[i] = y.rss_kib;
  }
  printf("pairs %d\n", n);
  printf("failures %d\n", failures);
  printf("ratio_median %.3f\n", quantile(ratio, n, 0.5));
  printf("ratio_p10 %.3f\nratio_p90 %.3f\n", quantile(ratio, n, 0.1), quantile(ratio, n, 0.9));
  printf("a_median_us %.1f\nb_median_us %.1f\n", quantile(ta, n, 0.5), quantile(tb, n, 0.5));
  printf("a_p90_us %.1f\nb_p90_us %.1f\n", quantile(ta, n, 0.9), quantile(tb, n, 0.9));
  printf("a_rss_median_kib %.0f\na_rss_max_kib %.0f\n", quantile(ra, n, 0.5), quantile(ra, n, 1.0));
  printf("b_rss_median_kib %.0f\nb_rss_max_kib %.0f\n", quantile(rb, n, 0.5), quantile(rb, n, 1.0));
  printf("self_hwm_kib %ld\n", self_hwm_kib());
  return 0;
}
