/*
 * The broadcast bench's physical limit (bench/broadcast.ts): the relay of bench/broadcast-plain-server.ts
 * written in C. One thread, epoll, the same coalescing rule: what one turn of the event loop read (one
 * epoll_wait's worth of events) is written once to every receiver, one write per socket per turn. A
 * socket becomes the publisher by sending anything; receivers never send. No framing, no state per
 * message.
 *
 * A write the kernel takes only in part leaves the receiver behind, and what it has not taken is written
 * when the socket is writable again, ahead of anything newer, with one writev, as Node's socket.write
 * buffers and writes it. What a turn read is kept once, in a round shared by every receiver still owing
 * it: a receiver behind holds only a cursor (a round and an offset into it), because it owes every round
 * from that one to the newest. An earlier version copied each round into every late receiver's own
 * backlog: near its edge 52 % of its time went to those copies and 30 % to the page faults under them,
 * a step that left receivers behind never caught up, and the relay's passes disagreed (2026-12-03).
 * livemux's outbound queues, and Node's socket queues, hold references too.
 *
 * A receiver with more than `--max-backlog` bytes owed (bench/broadcast.ts passes livemux's outbound
 * queue bound) is closed, as livemux closes a member that far behind (SLOW_CONSUMER). Rounds are freed
 * once no receiver owes them, so the relay holds at most that bound plus one round, whatever the room's
 * size.
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
#include <sys/uio.h>
#include <unistd.h>

#define MAX_FDS 65536
#define MAX_IOV 1024 /* IOV_MAX on Linux, as libuv's writev */

/** What one turn read, shared by every receiver that has not taken all of it yet. */
struct round {
  struct round *next;
  uint64_t start; /* bytes relayed before this round, over the relay's life */
  size_t len;
  int cursors; /* receivers whose next unsent byte is in this round */
  uint8_t bytes[];
};

struct peer {
  int receiver; /* in the receivers' list */
  int index;    /* position in that list */
  struct round *at; /* behind: the round its next unsent byte is in; NULL when caught up */
  size_t off;       /* that byte's offset in `at` */
};

static struct peer peers[MAX_FDS];
static int receivers[MAX_FDS];
static int n_receivers;
static struct round *oldest, *newest; /* rounds some receiver still owes */
static uint64_t relayed;              /* bytes relayed over the relay's life: the end of `newest` */
static uint8_t *pending;
static size_t pending_len, pending_cap;
static int ep;
static uint64_t max_backlog = UINT64_MAX;

static void die(const char *what) {
  perror(what);
  exit(1);
}

static void watch(int fd, uint32_t events, int op) {
  struct epoll_event ev = {.events = events, .data.fd = fd};
  epoll_ctl(ep, op, fd, &ev);
}

/** Frees the rounds nobody owes: those before the oldest round a receiver's cursor is in. */
static void free_owed_by_none(void) {
  while (oldest && oldest->cursors == 0) {
    struct round *r = oldest;
    oldest = r->next;
    if (!oldest) newest = NULL;
    free(r);
  }
}

/** Moves a receiver's cursor to `off` bytes into round `r` (NULL: caught up). */
static void move_cursor(int fd, struct round *r, size_t off) {
  struct peer *p = &peers[fd];
  if (p->at == r) {
    p->off = off;
    return;
  }
  if (p->at) p->at->cursors--;
  else watch(fd, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
  if (r) r->cursors++;
  else watch(fd, EPOLLIN, EPOLL_CTL_MOD);
  p->at = r;
  p->off = off;
  free_owed_by_none();
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
  if (peers[fd].at) {
    peers[fd].at->cursors--;
    free_owed_by_none();
  }
  epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
  close(fd);
  memset(&peers[fd], 0, sizeof peers[fd]);
}

/** This turn's round to a receiver: one send when it is caught up; behind, it now owes one round more. */
static void relay(int fd, struct round *r) {
  struct peer *p = &peers[fd];
  if (!p->at) {
    ssize_t w = send(fd, r->bytes, r->len, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno != EAGAIN) return; /* closed: its EPOLLIN/EPOLLHUP says so */
      w = 0;
    }
    if ((size_t)w < r->len) move_cursor(fd, r, (size_t)w);
  }
  if (p->at && relayed - (p->at->start + p->off) > max_backlog) close_peer(fd);
}

/** A receiver behind: one writev of what it owes, oldest first. */
static void on_writable(int fd) {
  struct peer *p = &peers[fd];
  if (!p->at) return;
  struct iovec iov[MAX_IOV];
  int n = 0;
  size_t off = p->off;
  for (struct round *r = p->at; r && n < MAX_IOV; r = r->next, off = 0)
    iov[n++] = (struct iovec){.iov_base = r->bytes + off, .iov_len = r->len - off};
  ssize_t w = writev(fd, iov, n);
  if (w <= 0) return;
  struct round *r = p->at;
  off = p->off + (size_t)w;
  while (r && off >= r->len) {
    off -= r->len;
    r = r->next;
  }
  move_cursor(fd, r, r ? off : 0);
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

/** What this turn read becomes the newest round, owed by every receiver behind. */
static struct round *new_round(void) {
  struct round *r = malloc(sizeof *r + pending_len);
  if (!r) die("malloc");
  *r = (struct round){.start = relayed, .len = pending_len};
  memcpy(r->bytes, pending, pending_len);
  relayed += pending_len;
  pending_len = 0;
  if (newest) newest->next = r;
  else oldest = r;
  newest = r;
  return r;
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
    struct round *r = new_round();
    r->cursors++; /* held while the loop writes it: a receiver closed in the loop must not free it */
    for (int i = 0; i < n_receivers;) {
      int fd = receivers[i];
      relay(fd, r);
      /* Closed (too far behind): the list's last receiver took its place, and is written next. */
      if (i < n_receivers && receivers[i] == fd) i++;
    }
    r->cursors--;
    free_owed_by_none();
  }
}
