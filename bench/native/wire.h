/*
 * What the bench's native livemux clients (broadcast-receiver.c, im-load.c) share: the frame header
 * (PROTOCOL.md §2: magic 0x4c, version 1, type, flags, session u32 BE, length u32 BE), the reassembly of
 * frames across reads, the clocks they report on, a non-blocking loopback connect, and the latency
 * buckets of LatencyHistogram in bench/broadcast-protocol.ts (2 % wide from 10 µs). Each program is one
 * .c file compiled alone (bench/native.ts), so everything here is static.
 */
#ifndef LIVEMUX_BENCH_WIRE_H
#define LIVEMUX_BENCH_WIRE_H

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HEADER_SIZE 12
#define MAGIC 0x4c
#define T_OPEN_OK 0x04
#define T_OPEN_FAIL 0x05
#define T_DATA 0x06
#define T_PING 0x09
#define T_PONG 0x0a
#define T_WINDOW_UPDATE 0x0c
#define MAX_FRAME (1 << 20)
#define FIRST_MS 0.01
#define GROWTH 1.02
#define BUCKETS 820

/** Milliseconds on CLOCK_MONOTONIC, the clock bench/broadcast-protocol.ts's clockMs reads. */
static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/** This process's CPU time (user + system), µs. */
static double cpu_us(void) {
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  return (u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1e6 + u.ru_utime.tv_usec + u.ru_stime.tv_usec;
}

static void die(const char *what) {
  perror(what);
  exit(1);
}

/** The bytes of a hex string ("-" or "": none). */
static uint8_t *from_hex(const char *hex, size_t *len) {
  size_t n = strcmp(hex, "-") ? strlen(hex) / 2 : 0;
  uint8_t *out = malloc(n ? n : 1);
  for (size_t i = 0; i < n; i++) sscanf(hex + 2 * i, "%2hhx", &out[i]);
  *len = n;
  return out;
}

/** The histogram bucket of a latency: as LatencyHistogram.add. */
static int latency_bucket(double ms) {
  int i = ms <= FIRST_MS ? 0 : (int)ceil(log(ms / FIRST_MS) / log(GROWTH));
  return i < BUCKETS ? i : BUCKETS - 1;
}

static void put_header(uint8_t *h, int type, int flags, uint32_t session, uint32_t length) {
  h[0] = MAGIC;
  h[1] = 1;
  h[2] = (uint8_t)type;
  h[3] = (uint8_t)flags;
  uint32_t s = htonl(session), l = htonl(length);
  memcpy(h + 4, &s, 4);
  memcpy(h + 8, &l, 4);
}

/** The PONG answering a PING with `length` payload bytes, into `out` (HEADER_SIZE + 64 bytes); 0 if it is longer than 64. */
static size_t pong_frame(uint8_t *out, const uint8_t *payload, uint32_t length) {
  if (length > 64) return 0;
  put_header(out, T_PONG, 0, 0, length);
  memcpy(out + HEADER_SIZE, payload, length);
  return HEADER_SIZE + length;
}

/** A socket connecting to 127.0.0.1:`port` (non-blocking, TCP_NODELAY), watched for EPOLLIN|EPOLLOUT with `tag`. */
static int connect_loopback(int ep, int port, uint32_t tag) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (fd < 0) die("socket");
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) die("connect");
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = tag};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
  return fd;
}

/** Dies unless the non-blocking connect of `fd` succeeded. */
static void check_connected(int fd) {
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err) {
    errno = err;
    die("connect");
  }
}

/** An incomplete frame carried over from one read to the next. */
struct framer {
  uint8_t *buf;
  size_t len, cap;
};

/** The payload length of the frame whose header is at `h`; a header without the magic or past MAX_FRAME ends the process. */
static uint32_t frame_length(const uint8_t *h, const char *who) {
  uint32_t length;
  memcpy(&length, h + 8, 4);
  length = ntohl(length);
  if (h[0] != MAGIC || length > MAX_FRAME) {
    fprintf(stderr, "%s: bad frame\n", who);
    exit(1);
  }
  return length;
}

/**
 * Hands every complete frame in the carried-over bytes plus `chunk` to on_frame(ctx, frame, payload
 * length) and keeps the incomplete tail; stops when on_frame returns 0 (it closed the connection). A
 * frame without the magic or longer than MAX_FRAME ends the process: `who` names it in the message.
 *
 * Only the frame split between two reads is copied: the carried-over head is completed from the
 * chunk's first bytes, the rest is read where it lies. Appending the whole chunk to the carry-over
 * made a receiver behind the pace (every read a full buffer, nearly every one ending inside a frame)
 * copy all it read, into a buffer per connection grown to a read's size. In a perf profile of the C
 * relay's room behind at 6,500 messages/s (2026-12-04 04:03) the receivers took 44 % of the machine,
 * nearly half of it that memmove (a fifth of it the page faults under it), while the relay idled on
 * 11 %: the receivers, not the server, kept a room behind once it was, and a step over the edge collapsed.
 */
static void framer_feed(struct framer *f, const uint8_t *chunk, size_t n, int (*on_frame)(void *, const uint8_t *, uint32_t), void *ctx, const char *who) {
  const uint8_t *p = chunk;
  size_t avail = n;
  while (f->len > 0) {
    size_t want = f->len < HEADER_SIZE ? HEADER_SIZE : HEADER_SIZE + frame_length(f->buf, who);
    if (f->len == want) {
      f->len = 0;
      if (!on_frame(ctx, f->buf, (uint32_t)(want - HEADER_SIZE))) return;
      break;
    }
    size_t take = want - f->len < avail ? want - f->len : avail;
    if (want > f->cap) {
      f->cap = want;
      f->buf = realloc(f->buf, f->cap);
    }
    memcpy(f->buf + f->len, p, take);
    f->len += take;
    p += take;
    avail -= take;
    if (f->len < want) return;
  }
  size_t at = 0;
  while (avail - at >= HEADER_SIZE) {
    uint32_t length = frame_length(p + at, who);
    if (avail - at < HEADER_SIZE + length) break;
    if (!on_frame(ctx, p + at, length)) return;
    at += HEADER_SIZE + length;
  }
  size_t rest = avail - at;
  if (rest > 0) {
    if (rest > f->cap) {
      f->cap = rest;
      f->buf = realloc(f->buf, f->cap);
    }
    memcpy(f->buf, p + at, rest);
  }
  f->len = rest;
}

#endif
