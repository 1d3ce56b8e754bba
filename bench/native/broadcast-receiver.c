/*
 * Native receivers for the broadcast bench (bench/broadcast.ts): `--count` connections in one process,
 * one thread, epoll. They do what bench/broadcast-clients.ts does, and print the same JSON lines, at a
 * fraction of its CPU per delivery, so that the server under test, not the receivers, is what runs out
 * of CPU first on a small machine.
 *
 *   --mode plain    livemux DATA frames straight from a relay (no handshake)
 *   --mode livemux  writes --hello (hex: HELLO + OPEN of session 1) on connect, --sub (hex: the DATA
 *                   frame `/sub room`) on OPEN_OK; returns credit as PROTOCOL.md §7 says (half the
 *                   --window owed: WINDOW_UPDATE for session 1 and for the connection); answers PING
 *   --nap-us N      see nap_us below
 *
 * Messages (bench/broadcast-protocol.ts): 64-byte ASCII, `M <phase> <sent ms>`, `E <phase> <total> <sent
 * ms>`, `P` (probe). Times are CLOCK_MONOTONIC in ms, the clock the publisher stamps with.
 *
 * Prints {"event":"connected"} once every receiver is connected (livemux: has sent /sub), {"event":
 * "ready"} once every receiver has had a first message, then one {"event":"phase",...} line per phase
 * once every receiver still connected has had its end message: room messages missing, receivers
 * closed, this process's CPU time since the previous line, and for every --sample-th receiver the
 * latency histogram, the time from its first message of the phase to the end message, and how much
 * its latency grew (bench/broadcast-protocol.ts, lagGrowth: the least-squares slope of latency over
 * send time from the phase's second second on, times the phase's length less two seconds). Runs until
 * SIGTERM.
 */
#include "wire.h"

#define CONNECT_BATCH 100
#define ANCHOR_FROM_MS 1000.0
#define PHASE_SLOTS 64

struct samples {
  double *sent, *lag;
  size_t n, cap;
};

struct conn {
  int fd;
  int connected, subscribed, ready, sampled, open;
  long received; /* room messages since the start, corrected to the published total at each end */
  double phase_start;
  uint64_t owed; /* DATA payload bytes consumed since the last WINDOW_UPDATE */
  struct samples s;
  struct framer in;
};

struct tally {
  long phase; /* 0: free slot */
  long done, missing;
  double *receive_ms, *growth_ms;
  size_t n_receive, n_growth;
};

static const char *mode = "plain";
/* mode is "livemux": read per frame, so compared once here, not with strcmp on every DATA frame. */
static int livemux_mode;
/*
 * After an epoll_wait that did not fill its batch, the receivers nap this long (--nap-us) before the
 * next: a server's write then seldom has to wake a sleeping receiver (a cross-core wakeup, dear on a
 * VM), and each wakeup reads many sockets. It adds at most a millisecond to latencies of tens to
 * hundreds; it cut the receivers' CPU per delivery from 0.21 to 0.125 µs at 2 M deliveries/s.
 */
static int port, count = 2500, sample = 50, nap_us = 1000;
static uint64_t window = 1u << 30;
static uint8_t *hello, *sub;
static size_t hello_len, sub_len;
static int ep;
static struct conn *conns;
static int live, closed_count, ready_count, connected_count, started;
static long histogram[BUCKETS];
static struct tally tallies[PHASE_SLOTS];
static double cpu_at_report;
static uint8_t rbuf[256 * 1024];

static void push_double(double **a, size_t *n, double v) {
  if ((*n & (*n - 1)) == 0) *a = realloc(*a, (*n ? *n * 2 : 8) * sizeof(double));
  (*a)[(*n)++] = v;
}

static void add_sample(struct samples *s, double sent, double lag) {
  if (s->n == s->cap) {
    s->cap = s->cap ? s->cap * 2 : 256;
    s->sent = realloc(s->sent, s->cap * sizeof(double));
    s->lag = realloc(s->lag, s->cap * sizeof(double));
  }
  s->sent[s->n] = sent;
  s->lag[s->n++] = lag;
}

static void histogram_add(double ms) {
  histogram[latency_bucket(ms)]++;
}

/**
 * Best-effort write of a small control frame; a loopback socket with room for megabytes takes it.
 * MSG_NOSIGNAL: a server that closed the connection (livemux dropping a receiver far behind) makes
 * this EPIPE, not a SIGPIPE that kills every receiver of the process (2026-12-03 17:51: a PONG).
 */
static void send_all(struct conn *c, const uint8_t *p, size_t n) {
  while (n > 0) {
    ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      return; /* closed or full: the read side notices */
    }
    p += w;
    n -= (size_t)w;
  }
}

/** The numeric fields of a message: phase, then sent-at (M) or total and sent-at (E). */
static void fields(const uint8_t *payload, size_t n, double out[3]) {
  char text[128];
  if (n > sizeof text - 1) n = sizeof text - 1;
  memcpy(text, payload, n);
  text[n] = 0;
  char *p = text + 1;
  for (int i = 0; i < 3; i++) out[i] = strtod(p, &p);
}

/** How much later the phase's last messages came than its first, from every sample (see the header). */
static double lag_growth(const struct samples *s, double end) {
  if (s->n == 0) return NAN;
  double from = s->sent[0] + ANCHOR_FROM_MS, sx = 0, sy = 0, sxx = 0, sxy = 0;
  long k = 0;
  for (size_t i = 0; i < s->n; i++) {
    if (s->sent[i] < from || s->sent[i] >= end) continue;
    double x = s->sent[i] - from;
    sx += x, sy += s->lag[i], sxx += x * x, sxy += x * s->lag[i], k++;
  }
  double spread = k > 1 ? sxx - sx * sx / k : 0;
  if (spread <= 0) return NAN;
  return (sxy - sx * sy / k) / spread * (end - from - ANCHOR_FROM_MS);
}

static struct tally *tally_for(long phase) {
  struct tally *t = &tallies[phase % PHASE_SLOTS];
  if (t->phase != phase) {
    free(t->receive_ms);
    free(t->growth_ms);
    memset(t, 0, sizeof *t);
    t->phase = phase;
  }
  return t;
}

static void print_array(const double *a, size_t n) {
  putchar('[');
  for (size_t i = 0; i < n; i++) printf(i ? ",%.3f" : "%.3f", a[i]);
  putchar(']');
}

/** Prints the phase's line once every receiver still connected has seen its end. */
static void report(struct tally *t) {
  if (t->phase == 0 || t->done < live) return;
  double cpu = cpu_us();
  printf("{\"event\":\"phase\",\"phase\":%ld,\"missing\":%ld,\"closed\":%d,\"cpuUs\":%.0f,\"receiveMs\":", t->phase, t->missing,
         closed_count, cpu - cpu_at_report);
  cpu_at_report = cpu;
  print_array(t->receive_ms, t->n_receive);
  printf(",\"lagGrowthMs\":");
  print_array(t->growth_ms, t->n_growth);
  printf(",\"histogram\":[");
  for (int i = 0; i < BUCKETS; i++) printf(i ? ",%ld" : "%ld", histogram[i]);
  printf("]}\n");
  fflush(stdout);
  memset(histogram, 0, sizeof histogram);
  free(t->receive_ms);
  free(t->growth_ms);
  memset(t, 0, sizeof *t);
}

static void on_message(struct conn *c, const uint8_t *payload, size_t n) {
  if (n == 0) return;
  if (!c->ready) {
    c->ready = 1;
    if (++ready_count == count) {
      printf("{\"event\":\"ready\"}\n");
      fflush(stdout);
    }
  }
  if (payload[0] == 'M') {
    c->received++;
    if (c->sampled) {
      double now = now_ms(), f[3];
      fields(payload, n, f);
      histogram_add(now - f[1]);
      add_sample(&c->s, f[1], now - f[1]);
      if (c->phase_start == 0) c->phase_start = now;
    }
  } else if (payload[0] == 'E') {
    double f[3];
    fields(payload, n, f);
    struct tally *t = tally_for((long)f[0]);
    t->done++;
    t->missing += (long)f[1] - c->received;
    c->received = (long)f[1];
    if (c->sampled && c->phase_start > 0) {
      push_double(&t->receive_ms, &t->n_receive, now_ms() - c->phase_start);
      double growth = lag_growth(&c->s, f[2]);
      if (!isnan(growth)) push_double(&t->growth_ms, &t->n_growth, growth);
    }
    c->phase_start = 0;
    c->s.n = 0;
    report(t);
  }
}

static void subscribed(struct conn *c) {
  c->subscribed = 1;
  if (++connected_count == count) {
    printf("{\"event\":\"connected\"}\n");
    fflush(stdout);
  }
}

static void on_frame(struct conn *c, const uint8_t *f, uint32_t length) {
  const uint8_t *payload = f + HEADER_SIZE;
  switch (f[2]) {
    case T_DATA:
      if (livemux_mode) {
        c->owed += length;
        if (c->owed >= window / 2) {
          uint8_t wu[2 * (HEADER_SIZE + 4)];
          uint32_t inc = htonl((uint32_t)c->owed);
          put_header(wu, T_WINDOW_UPDATE, 0, 1, 4);
          memcpy(wu + HEADER_SIZE, &inc, 4);
          put_header(wu + HEADER_SIZE + 4, T_WINDOW_UPDATE, 0, 0, 4);
          memcpy(wu + 2 * HEADER_SIZE + 4, &inc, 4);
          send_all(c, wu, sizeof wu);
          c->owed = 0;
        }
      }
      on_message(c, payload, length);
      break;
    case T_PING: {
      uint8_t pong[HEADER_SIZE + 64];
      size_t n = pong_frame(pong, payload, length);
      if (n > 0) send_all(c, pong, n);
      break;
    }
    case T_OPEN_OK:
      if (!c->subscribed) {
        send_all(c, sub, sub_len);
        subscribed(c);
      }
      break;
    case T_OPEN_FAIL:
      fprintf(stderr, "broadcast-receiver: OPEN refused\n");
      exit(1);
  }
}

static void on_close(struct conn *c) {
  epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  c->open = 0;
  closed_count++;
  live--;
  for (int i = 0; i < PHASE_SLOTS; i++) report(&tallies[i]);
}

/** framer_feed's view of on_frame: goes on while the connection is open. */
static int frame_of(void *c, const uint8_t *f, uint32_t length) {
  on_frame(c, f, length);
  return ((struct conn *)c)->open;
}

static void start_connect(int i) {
  struct conn *c = &conns[i];
  c->fd = connect_loopback(ep, port, (uint32_t)i);
  c->open = 1;
  c->sampled = i % sample == 0;
}

static void on_connected(int i) {
  struct conn *c = &conns[i];
  check_connected(c->fd);
  c->connected = 1;
  struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
  epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
  if (livemux_mode) send_all(c, hello, hello_len);
  else subscribed(c);
  if (started < count) start_connect(started++);
}

int main(int argc, char **argv) {
  for (int i = 1; i + 1 < argc; i += 2) {
    const char *k = argv[i], *v = argv[i + 1];
    if (!strcmp(k, "--mode")) mode = v;
    else if (!strcmp(k, "--port")) port = atoi(v);
    else if (!strcmp(k, "--count")) count = atoi(v);
    else if (!strcmp(k, "--sample")) sample = atoi(v);
    else if (!strcmp(k, "--nap-us")) nap_us = atoi(v);
    else if (!strcmp(k, "--window")) window = strtoull(v, NULL, 10);
    else if (!strcmp(k, "--hello")) hello = from_hex(v, &hello_len);
    else if (!strcmp(k, "--sub")) sub = from_hex(v, &sub_len);
  }
  if (strcmp(mode, "plain") && (strcmp(mode, "livemux") || !hello || !sub)) {
    fprintf(stderr, "broadcast-receiver: --mode plain, or --mode livemux with --hello and --sub\n");
    return 2;
  }
  livemux_mode = strcmp(mode, "livemux") == 0;
  setvbuf(stdout, NULL, _IOFBF, 1 << 16);
  conns = calloc((size_t)count, sizeof *conns);
  live = count;
  ep = epoll_create1(0);
  cpu_at_report = cpu_us();
  for (; started < count && started < CONNECT_BATCH; started++) start_connect(started);
  struct epoll_event events[512];
  for (;;) {
    int n = epoll_wait(ep, events, 512, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int e = 0; e < n; e++) {
      int i = (int)events[e].data.u32;
      struct conn *c = &conns[i];
      if (!c->open) continue;
      if (!c->connected) {
        on_connected(i);
        continue;
      }
      ssize_t r = read(c->fd, rbuf, sizeof rbuf);
      if (r > 0) framer_feed(&c->in, rbuf, (size_t)r, frame_of, c, "broadcast-receiver");
      else if (r == 0 || (errno != EAGAIN && errno != EINTR)) on_close(c);
    }
    if (nap_us > 0 && n < 512) usleep((useconds_t)nap_us);
  }
}
