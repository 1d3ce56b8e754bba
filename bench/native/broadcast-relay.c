/*
 * The broadcast bench's physical limit (bench/broadcast.ts): the relay of bench/broadcast-plain-server.ts
 * written in C. One thread, epoll, the same coalescing rule: what one turn of the event loop read (one
 * epoll_wait's worth of events) is written once to every receiver, one write per socket per turn. A
 * socket becomes the publisher by sending anything; receivers never send. A write the kernel takes only
 * in part keeps its rest in a per-socket backlog, written when the socket is writable again and ahead of
 * anything newer, as Node's socket.write buffers it. No framing, no state per message.
 *
 * The backlog is written from an offset and compacted only when an append needs the room: moving the
 * unsent rest to the front after every partial send made draining a backlog of n bytes cost O(n^2)
 * copies, and one step that left receivers behind took the relay minutes to recover from (a later,
 * slower step then failed too: peak searches that passed a rate and failed a lower one).
 *
 * A receiver whose backlog would pass `--max-backlog` bytes (bench/broadcast.ts passes livemux's
 * outbound queue bound) is closed, as livemux closes a member that far behind (SLOW_CONSUMER): unbounded,
 * one overloaded step of a peak search held 8.5 GB here (2026-12-03), and the room's backlog, drained
 * long after the step, spoiled the steps after it.
 *
 * Prints {"event":"listening","port":N,"pid":N}; runs until SIGTERM.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_FDS 65536

struct peer {
  int receiver; /* in the receivers' list */
  int index;    /* position in that list */
  uint8_t *backlog;
  size_t off, len, cap; /* unsent bytes: backlog[off .. off + len) */
};

static struct peer peers[MAX_FDS];
static int receivers[MAX_FDS];
static int n_receivers;
static uint8_t *pending;
static size_t pending_len, pending_cap;
static int ep;
static size_t max_backlog = SIZE_MAX;

static void die(const char *what) {
  perror(what);
  exit(1);
}

static void drop_receiver(int fd) {
  struct peer *p = &peers[fd];
  if (!p->receiver) return;
  int last = receivers[--n_receivers];
  receivers[p->index] = last;
  peers[last].index = p->index;
  p->receiver = 0;
}

static void close_peer(int fd) {
  drop_receiver(fd);
  epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
  close(fd);
  free(peers[fd].backlog);
  memset(&peers[fd], 0, sizeof peers[fd]);
}

static void watch(int fd, uint32_t events, int op) {
  struct epoll_event ev = {.events = events, .data.fd = fd};
  epoll_ctl(ep, op, fd, &ev);
}

static void backlog_append(int fd, const uint8_t *bytes, size_t n) {
  struct peer *p = &peers[fd];
  if (p->len + n > max_backlog) return close_peer(fd);
  if (p->len == 0) {
    watch(fd, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
    p->off = 0;
  }
  if (p->off + p->len + n > p->cap) {
    /* Out of room at the end: the unsent bytes move to the front once, and the buffer grows if need be. */
    memmove(p->backlog, p->backlog + p->off, p->len);
    p->off = 0;
    if (p->len + n > p->cap) {
      p->cap = (p->len + n) * 2;
      p->backlog = realloc(p->backlog, p->cap);
    }
  }
  memcpy(p->backlog + p->off + p->len, bytes, n);
  p->len += n;
}

/** One write of `bytes` to a receiver; what the kernel does not take waits in its backlog. */
static void relay(int fd, const uint8_t *bytes, size_t n) {
  if (peers[fd].len > 0) return backlog_append(fd, bytes, n);
  ssize_t w = send(fd, bytes, n, MSG_NOSIGNAL);
  if (w < 0) {
    if (errno != EAGAIN) return; /* closed: its EPOLLIN/EPOLLHUP says so */
    w = 0;
  }
  if ((size_t)w < n) backlog_append(fd, bytes + w, n - (size_t)w);
}

static void on_writable(int fd) {
  struct peer *p = &peers[fd];
  ssize_t w = send(fd, p->backlog + p->off, p->len, MSG_NOSIGNAL);
  if (w <= 0) return;
  p->off += (size_t)w;
  p->len -= (size_t)w;
  if (p->len == 0) watch(fd, EPOLLIN, EPOLL_CTL_MOD);
}

static void on_readable(int fd) {
  if (pending_cap - pending_len < 65536) {
    pending_cap = pending_cap ? pending_cap * 2 : 1 << 20;
    pending = realloc(pending, pending_cap);
  }
  ssize_t r = recv(fd, pending + pending_len, pending_cap - pending_len, 0);
  if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) return close_peer(fd);
  if (r < 0) return;
  drop_receiver(fd); /* it sent something: the publisher */
  pending_len += (size_t)r;
}

int main(int argc, char **argv) {
  for (int i = 1; i + 1 < argc; i += 2)
    if (strcmp(argv[i], "--max-backlog") == 0) max_backlog = strtoull(argv[i + 1], NULL, 10);
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 1024) < 0) die("listen");
  socklen_t alen = sizeof a;
  getsockname(lfd, (struct sockaddr *)&a, &alen);
  printf("{\"event\":\"listening\",\"port\":%d,\"pid\":%d}\n", ntohs(a.sin_port), getpid());
  fflush(stdout);
  ep = epoll_create1(0);
  watch(lfd, EPOLLIN, EPOLL_CTL_ADD);
  struct epoll_event events[1024];
  for (;;) {
    int n = epoll_wait(ep, events, 1024, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int e = 0; e < n; e++) {
      int fd = events[e].data.fd;
      if (fd == lfd) {
        int c;
        while ((c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
          if (c >= MAX_FDS) {
            close(c);
            continue;
          }
          setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          peers[c] = (struct peer){.receiver = 1, .index = n_receivers};
          receivers[n_receivers++] = c;
          watch(c, EPOLLIN, EPOLL_CTL_ADD);
        }
        continue;
      }
      if (events[e].events & EPOLLOUT) on_writable(fd);
      if (events[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(fd);
    }
    if (pending_len == 0) continue;
    for (int i = 0; i < n_receivers;) {
      int fd = receivers[i];
      relay(fd, pending, pending_len);
      /* Closed (too far behind): the list's last receiver took its place, and is written next. */
      if (i < n_receivers && receivers[i] == fd) i++;
    }
    pending_len = 0;
  }
}
