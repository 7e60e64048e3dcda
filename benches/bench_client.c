/* The floor for `mailtoken token ACCOUNT` answered by the daemon: a minimal client that
 * does only what the protocol needs. It connects to $MAILTOKEN_SOCKET, sends the same
 * request line the real client sends (src/daemon/protocol.rs, "v":1), reads one reply
 * line and writes the credential to stdout with a newline. No JSON library: it takes the
 * string after "credential":" up to the next quote (a raw token has no escapes).
 *
 *   gcc -O2 -o bench_client benches/bench_client.c
 *   MAILTOKEN_SOCKET=/run/user/1000/mailtoken/socket ./bench_client ACCOUNT
 *
 * Built and used by scripts/bench only; not part of mailtoken. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv) {
  const char *path = getenv("MAILTOKEN_SOCKET");
  if (argc != 2 || !path) {
    fputs("usage: MAILTOKEN_SOCKET=PATH bench_client ACCOUNT\n", stderr);
    return 64;
  }
  char req[512];
  int n = snprintf(req, sizeof req,
                   "{\"v\":1,\"op\":\"token\",\"account\":\"%s\",\"format\":\"raw\","
                   "\"min_valid\":300,\"for\":\"imap\",\"wait_ms\":0}\n",
                   argv[1]);
  if (n <= 0 || n >= (int)sizeof req) return 64;
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof addr.sun_path) return 64;
  strcpy(addr.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
    perror("bench_client: connect");
    return 69;
  }
  if (write(fd, req, n) != n) {
    perror("bench_client: write");
    return 74;
  }
  static char buf[16384];
  size_t len = 0;
  while (len < sizeof buf - 1) {
    ssize_t r = read(fd, buf + len, sizeof buf - 1 - len);
    if (r <= 0) break;
    len += r;
    if (memchr(buf + len - r, '\n', r)) break;
  }
  buf[len] = 0;
  const char *key = "\"credential\":\"";
  char *start = strstr(buf, key);
  char *end = start ? strchr(start + strlen(key), '"') : NULL;
  if (!strstr(buf, "\"ok\":true") || !end) {
    fprintf(stderr, "bench_client: bad reply: %s", buf);
    return 75;
  }
  start += strlen(key);
  *end = '\n';
  size_t out = end + 1 - start;
  return write(1, start, out) == (ssize_t)out ? 0 : 74;
}
