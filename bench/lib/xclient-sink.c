/*
 * xclient-sink: a minimal, fast SMTP sink for the relay bench, in the spirit
 * of Postfix's smtp-sink but with Postfix smtpd's XCLIENT behaviour, which the
 * proxy requires and smtp-sink lacks (smtp-sink offers "XCLIENT NAME HELO",
 * without ADDR, and answers XCLIENT with 250 instead of a new 220 greeting).
 *
 * One thread, epoll, accepts everything, stores nothing. Counts messages (a
 * final dot answered 250); the bench reads the count with the extra command
 * "XCOUNT" (reply "250 <count>").
 *
 * Build: cc -O2 -o xclient-sink xclient-sink.c     Run: xclient-sink <port>
 * Listens on 127.0.0.1 only; prints "ready" on stdout once listening.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF 8192
#define MAXCONN 65536

struct conn {
  int fd;
  int data;      /* in DATA mode */
  int dstate;    /* DATA end detector: 0 mid-line, 1 CR, 2 line start, 3 '.', 4 '.' CR */
  size_t len;
  char buf[BUF];
};

static struct conn *conns[MAXCONN];
static unsigned long long messages = 0;

static const char EHLO_REPLY[] =
    "250-xclient-sink\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-8BITMIME\r\n"
    "250-XCLIENT NAME ADDR PORT PROTO HELO LOGIN DESTADDR DESTPORT\r\n"
    "250-ENHANCEDSTATUSCODES\r\n250 DSN\r\n";

static void say(struct conn *c, const char *s) {
  size_t n = strlen(s);
  /* Replies are small and the peer reads them before its next command. */
  while (n > 0) {
    ssize_t w = write(c->fd, s, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    s += w;
    n -= (size_t)w;
  }
}

static void drop(int ep, struct conn *c) {
  epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  conns[c->fd] = NULL;
  free(c);
}

/* Returns 0 to keep the connection, -1 to close it. */
static int command(struct conn *c, char *line) {
  char verb[9] = {0};
  size_t i;
  for (i = 0; i < 8 && line[i] && line[i] != ' '; i++) verb[i] = line[i];
  if (!strcasecmp(verb, "EHLO")) say(c, EHLO_REPLY);
  else if (!strcasecmp(verb, "HELO")) say(c, "250 xclient-sink\r\n");
  else if (!strcasecmp(verb, "XCLIENT")) say(c, "220 xclient-sink ESMTP\r\n");
  else if (!strcasecmp(verb, "MAIL") || !strcasecmp(verb, "RCPT") || !strcasecmp(verb, "RSET") || !strcasecmp(verb, "NOOP"))
    say(c, "250 2.0.0 Ok\r\n");
  else if (!strcasecmp(verb, "DATA")) {
    say(c, "354 End data with <CR><LF>.<CR><LF>\r\n");
    c->data = 1;
    c->dstate = 2;
  } else if (!strcasecmp(verb, "QUIT")) {
    say(c, "221 2.0.0 Bye\r\n");
    return -1;
  } else if (!strcasecmp(verb, "XCOUNT")) {
    char out[64];
    snprintf(out, sizeof out, "250 %llu\r\n", messages);
    say(c, out);
  } else say(c, "502 5.5.2 Error: command not recognized\r\n");
  return 0;
}

/* Consumes c->buf; returns -1 to close. */
static int process(struct conn *c) {
  size_t pos = 0;
  while (pos < c->len) {
    if (c->data) {
      for (; pos < c->len; pos++) {
        char ch = c->buf[pos];
        switch (c->dstate) {
          case 0: c->dstate = ch == '\r' ? 1 : 0; break;
          case 1: c->dstate = ch == '\n' ? 2 : ch == '\r' ? 1 : 0; break;
          case 2: c->dstate = ch == '.' ? 3 : ch == '\r' ? 1 : 0; break;
          case 3: c->dstate = ch == '\r' ? 4 : 0; break;
          case 4:
            if (ch == '\n') {
              c->data = 0;
              messages++;
              say(c, "250 2.0.0 Ok: queued as BENCH\r\n");
            } else c->dstate = ch == '\r' ? 1 : 0;
            break;
        }
        if (!c->data) { pos++; break; }
      }
      continue;
    }
    char *lf = memchr(c->buf + pos, '\n', c->len - pos);
    if (!lf) break;
    size_t end = (size_t)(lf - c->buf);
    if (end > pos && c->buf[end - 1] == '\r') c->buf[end - 1] = 0;
    *lf = 0;
    if (command(c, c->buf + pos) < 0) return -1;
    pos = end + 1;
  }
  if (pos > 0) {
    memmove(c->buf, c->buf + pos, c->len - pos);
    c->len -= pos;
  }
  if (c->len == BUF) return -1; /* command line too long */
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: xclient-sink <port>\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  int one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons((unsigned short)atoi(argv[1]));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 4096) < 0) {
    perror("xclient-sink: bind/listen");
    return 1;
  }
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls};
  epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
  printf("ready\n");
  fflush(stdout);
  struct epoll_event evs[256];
  for (;;) {
    int n = epoll_wait(ep, evs, 256, -1);
    if (n < 0 && errno == EINTR) continue;
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd;
      if (fd == ls) {
        for (;;) {
          int s = accept4(ls, NULL, NULL, SOCK_NONBLOCK);
          if (s < 0) break;
          if (s >= MAXCONN) { close(s); continue; }
          setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          struct conn *c = calloc(1, sizeof *c);
          c->fd = s;
          conns[s] = c;
          struct epoll_event cev = {.events = EPOLLIN | EPOLLRDHUP, .data.fd = s};
          epoll_ctl(ep, EPOLL_CTL_ADD, s, &cev);
          say(c, "220 xclient-sink ESMTP\r\n");
        }
        continue;
      }
      struct conn *c = conns[fd];
      if (!c) continue;
      ssize_t r = read(fd, c->buf + c->len, BUF - c->len);
      if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (r <= 0) { drop(ep, c); continue; }
      c->len += (size_t)r;
      if (process(c) < 0) drop(ep, c);
    }
  }
}
