/*
 * Native load engine of the IM bench (bench/im-load.ts, bench/im-load-native.ts): one thread, epoll,
 * one non-blocking connection per user, doing the per-send socket work of the Node engine at a
 * fraction of its CPU, so that the system under test, not the generator, is what runs out of CPU
 * (issue 14's rule). The step search, pace rule and report stay in TypeScript; this process only
 * offers sends at a rate and counts what comes back.
 *
 * Set-up, on stdin (the tokens are minted in Node, so no JWT here):
 *   user <name> <partner> <hello hex> <after-open hex>   one per user: the bytes written on connect
 *                                                     (HELLO + OPEN of session 1) and on OPEN_OK ("-":
 *                                                     none; IM: the Sync)
 *   connect                                           connects every user (100 connects in flight at a
 *                                                     time); prints {"event":"ready"} once every user is
 *                                                     open (IM: its Sync done, ImEvent.synced)
 * Commands, on stdin, one at a time, each answered by one JSON line on stdout:
 *   step <no> <rate> <ms> <settle ms> <deliver ms> <max behind s>
 *       offers `rate` sends/s for `ms`, round-robin over the users, each to its partner; stops offering
 *       early once more than `max behind s` seconds of sends are unacknowledged; then waits up to
 *       `settle ms` for every ack and up to `deliver ms` more for every delivery. Answers
 *       {"sent","acked","delivered","overrun","early":[sum ms,n],"late":[sum ms,n],"cpuUs","ack":[…],
 *       "recipient":[…]}: latency histograms as LatencyHistogram in bench/broadcast-protocol.ts; early
 *       and late sum the ack latencies of sends made in the step's second and last seconds.
 *   drain <ms> <quiet ms>
 *       waits up to `ms` for every send to be acknowledged and every acked send delivered, then `quiet
 *       ms` more, then forgets what is still outstanding; answers {"drained":…}.
 *
 * Frames (PROTOCOL.md): 12-byte header (magic 0x4c, version 1, type, flags, session u32 BE, length u32
 * BE). A send is a DATA on session 1 whose 64-byte body (--size) starts with the send time (double LE,
 * ms on CLOCK_MONOTONIC), the step number (u32 LE) and, for echo, the request id (u32 LE).
 *   --business im    the DATA is an ImRequest{request_id, send{to, body, client_msg_id "<name>-<id>"}}
 *                    (proto/livemux/im/v1/im.proto); the sender's ImEvent.reply is the ack (ok=false: the
 *                    run fails, exit 1), the recipient's ImEvent.entries the delivery (the sender's own
 *                    copy is not one). Inboxes are acknowledged as the SDK's ImClient does: a cumulative
 *                    ImRequest{ack{inbox_seq}} once --ack-every entries are unacknowledged or
 *                    --ack-delay-ms after the first.
 *   --business echo  the DATA is the body itself; its echo is the ack and the delivery.
 * Credit is returned as PROTOCOL.md §7 says: a WINDOW_UPDATE for session 1 and one for the connection
 * once half of --session-window / --connection-window is owed. PINGs are answered. Writes use
 * MSG_NOSIGNAL (a closed connection is counted, not a SIGPIPE); what a socket does not take at once waits
 * in a per-connection buffer bounded by MAX_PENDING (beyond it the proxy is not reading: exit 1).
 */
#include "wire.h"

#define PRIORITY_HIGH 1
#define MAX_PENDING (4 << 20)
#define CONNECT_BATCH 100
#define TICK_MS 2
#define STDIN_TAG UINT32_MAX
#define MAX_NAME 64

/* A send waiting for its ack, in its user's ring at request_id % ring. */
struct pending {
  uint32_t request_id; /* 0: free */
  uint32_t step;
  double at;
};

struct user {
  int fd, connected, open, ready, closed;
  char name[MAX_NAME], partner[MAX_NAME];
  size_t name_len, partner_len;
  uint8_t *hello, *after_open;
  size_t hello_len, after_open_len;
  uint32_t next_request_id;
  struct pending *ring;
  uint64_t ack_seq; /* highest inbox seq received, acknowledged once unacked reaches ack_every */
  uint32_t unacked;
  double first_unacked_at;
  int next_unacked; /* the queue of users with unacknowledged entries, oldest first: -1 ends it */
  int queued;
  uint64_t owed_session, owed_connection;
  struct framer in;
  uint8_t *out; /* bytes the socket did not take yet */
  size_t out_len, out_cap;
};

struct latency {
  long counts[BUCKETS];
};

enum phase { IDLE, OFFER, SETTLE, DELIVER, DRAIN, QUIET };

static int echo, port, body_bytes = 64, ack_every = 64, ring = 256;
static double ack_delay_ms = 1000;
/*
 * After an epoll_wait that did not fill its batch, nap this long (--nap-us) before the next, as the
 * broadcast receivers do: a proxy's write then seldom has to wake a sleeping generator (a cross-core
 * wakeup, dear on a VM, and paid in the writer's CPU time), and each wakeup reads many sockets. Phones
 * on a network cost the proxy no such wakeup. It adds at most that long to the latencies measured.
 */
static int nap_us;
static uint64_t session_window = 256 * 1024, connection_window = 1 << 20;
static struct user *users;
static int n_users, cap_users, started, ready_count, closed_count;
static int unacked_head = -1, unacked_tail = -1;
static int ep;
static uint8_t rbuf[256 * 1024];

/* The step under way. */
static enum phase phase = IDLE;
static uint32_t step_no;
static double rate, step_ms, settle_ms, deliver_ms, max_behind_s, deadline, quiet_ms;
static double step_start;
static long sent, acked, delivered, next_user;
static int overrun;
static double early_sum, late_sum;
static long early_n, late_n;
static struct latency ack_latency, recipient_latency;
static double cpu_at_start;
/* Over the whole run: sends outstanding, and acked sends not yet delivered, to tell when a backlog is worked off. */
static long outstanding, total_acked, total_delivered;

/** A step is counting: offering, or waiting for its acks and deliveries (not between steps, nor draining). */
static int measuring(void) {
  return phase == OFFER || phase == SETTLE || phase == DELIVER;
}

static void fail(const char *what) {
  fprintf(stderr, "im-load: %s\n", what);
  exit(1);
}

static void latency_add(struct latency *h, double ms) {
  h->counts[latency_bucket(ms)]++;
}

/* ---- writing ---- */

static void watch(struct user *u, uint32_t events) {
  struct epoll_event ev = {.events = events, .data.u32 = (uint32_t)(u - users)};
  epoll_ctl(ep, EPOLL_CTL_MOD, u->fd, &ev);
}

/**
 * Writes what the socket takes now and keeps the rest for EPOLLOUT. MSG_NOSIGNAL: a connection the
 * proxy closed makes this EPIPE, counted by the read side, not a SIGPIPE that ends the run.
 */
static void write_bytes(struct user *u, const uint8_t *p, size_t n) {
  if (u->closed) return;
  if (u->out_len == 0) {
    while (n > 0) {
      ssize_t w = send(u->fd, p, n, MSG_NOSIGNAL);
      if (w < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN) return; /* closed: the read side notices */
        break;
      }
      p += w;
      n -= (size_t)w;
    }
    if (n == 0) return;
    watch(u, EPOLLIN | EPOLLOUT);
  }
  if (u->out_len + n > MAX_PENDING) fail("the proxy stopped reading a connection (over 4 MiB waiting)");
  if (u->out_len + n > u->out_cap) {
    u->out_cap = (u->out_len + n) * 2;
    u->out = realloc(u->out, u->out_cap);
  }
  memcpy(u->out + u->out_len, p, n);
  u->out_len += n;
}

static void flush_out(struct user *u) {
  size_t at = 0;
  while (at < u->out_len) {
    ssize_t w = send(u->fd, u->out + at, u->out_len - at, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) u->out_len = at = 0;
      break;
    }
    at += (size_t)w;
  }
  memmove(u->out, u->out + at, u->out_len - at);
  u->out_len -= at;
  if (u->out_len == 0) watch(u, EPOLLIN);
}

/* ---- protobuf: the few fields written and read here (proto/livemux/im/v1/im.proto) ---- */

static size_t put_varint(uint8_t *p, uint64_t v) {
  size_t n = 0;
  while (v >= 0x80) p[n++] = (uint8_t)(v | 0x80), v >>= 7;
  p[n++] = (uint8_t)v;
  return n;
}

/* A length-delimited field: tag, length, bytes. */
static size_t put_bytes(uint8_t *p, int field, const void *bytes, size_t n) {
  size_t k = put_varint(p, (uint64_t)(field << 3 | 2));
  k += put_varint(p + k, n);
  memcpy(p + k, bytes, n);
  return k + n;
}

/** A protobuf reader over one message: next() yields each field; LEN fields as a slice. */
struct reader {
  const uint8_t *p, *end;
  int field, wire;
  uint64_t value;
  const uint8_t *bytes;
  size_t len;
};

static int read_varint(struct reader *r, uint64_t *v) {
  *v = 0;
  for (int shift = 0; r->p < r->end && shift < 64; shift += 7) {
    uint8_t b = *r->p++;
    *v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) return 1;
  }
  return 0;
}

static int next_field(struct reader *r) {
  uint64_t tag;
  if (r->p >= r->end || !read_varint(r, &tag)) return 0;
  r->field = (int)(tag >> 3);
  r->wire = (int)(tag & 7);
  switch (r->wire) {
    case 0:
      return read_varint(r, &r->value);
    case 1:
      if (r->end - r->p < 8) return 0;
      r->p += 8;
      return 1;
    case 2:
      if (!read_varint(r, &r->value) || r->value > (uint64_t)(r->end - r->p)) return 0;
      r->bytes = r->p;
      r->len = (size_t)r->value;
      r->p += r->len;
      return 1;
    case 5:
      if (r->end - r->p < 4) return 0;
      r->p += 4;
      return 1;
  }
  return 0;
}

static struct reader reader_of(const uint8_t *p, size_t n) {
  struct reader r = {.p = p, .end = p + n};
  return r;
}

/* ---- the load ---- */

static void send_one(struct user *u) {
  uint32_t request_id = u->next_request_id++;
  if (request_id == 0) request_id = u->next_request_id++;
  double at = now_ms();
  uint8_t body[1024];
  memset(body, 0x61, (size_t)body_bytes);
  memcpy(body, &at, 8);
  memcpy(body + 8, &step_no, 4);
  struct pending *slot = &u->ring[request_id % (uint32_t)ring];
  /* A send still unacknowledged a whole ring of sends later is forgotten: its step fails as unacked. */
  if (slot->request_id == 0) outstanding++;
  *slot = (struct pending){.request_id = request_id, .step = step_no, .at = at};
  uint8_t frame[HEADER_SIZE + 1024 + 256];
  size_t n;
  if (echo) {
    memcpy(body + 12, &request_id, 4);
    memcpy(frame + HEADER_SIZE, body, (size_t)body_bytes);
    n = (size_t)body_bytes;
  } else {
    char id[MAX_NAME + 16];
    int id_len = snprintf(id, sizeof id, "%s-%u", u->name, request_id);
    uint8_t send_msg[1024 + 160];
    size_t s = put_bytes(send_msg, 1, u->partner, u->partner_len);
    s += put_bytes(send_msg + s, 2, body, (size_t)body_bytes);
    s += put_bytes(send_msg + s, 3, id, (size_t)id_len);
    uint8_t *p = frame + HEADER_SIZE;
    n = 0;
    p[n++] = 1 << 3; /* request_id */
    n += put_varint(p + n, request_id);
    n += put_bytes(p + n, 3, send_msg, s); /* send */
  }
  put_header(frame, T_DATA, PRIORITY_HIGH, 1, (uint32_t)n);
  write_bytes(u, frame, HEADER_SIZE + n);
}

/** The sender's ack of `request_id` came (the IM Reply, or the echo). */
static void on_ack(struct user *u, uint32_t request_id, double now) {
  struct pending *slot = &u->ring[request_id % (uint32_t)ring];
  if (slot->request_id != request_id) return; /* forgotten after its step, or not a send */
  slot->request_id = 0;
  outstanding--;
  total_acked++;
  if (!measuring() || slot->step != step_no) return;
  double ms = now - slot->at;
  acked++;
  latency_add(&ack_latency, ms);
  long second = (long)floor((slot->at - step_start) / 1000);
  if (second == 1) early_sum += ms, early_n++;
  if (second == (long)floor(step_ms / 1000) - 1) late_sum += ms, late_n++;
}

static void on_delivery(const uint8_t *body, size_t n, double now) {
  total_delivered++;
  if (!measuring() || n < 12) return;
  uint32_t step;
  double at;
  memcpy(&step, body + 8, 4);
  if (step != step_no) return;
  memcpy(&at, body, 8);
  delivered++;
  latency_add(&recipient_latency, now - at);
}

static void flush_ack(struct user *u) {
  u->unacked = 0;
  uint8_t frame[HEADER_SIZE + 32], ack[16];
  size_t a = 0;
  ack[a++] = 1 << 3; /* inbox_seq */
  a += put_varint(ack + a, u->ack_seq);
  size_t n = put_bytes(frame + HEADER_SIZE, 4, ack, a); /* ImRequest.ack, request_id 0 */
  put_header(frame, T_DATA, PRIORITY_HIGH, 1, (uint32_t)n);
  write_bytes(u, frame, HEADER_SIZE + n);
}

/** Acknowledges every inbox whose first unacknowledged entry came ack_delay_ms ago, as the SDK's timer does. */
static void flush_due_acks(double now) {
  while (unacked_head >= 0 && users[unacked_head].first_unacked_at <= now - ack_delay_ms) {
    struct user *u = &users[unacked_head];
    unacked_head = u->next_unacked;
    if (unacked_head < 0) unacked_tail = -1;
    u->queued = 0;
    if (u->unacked > 0) flush_ack(u);
  }
}

static void became_ready(struct user *u) {
  if (u->ready) return;
  u->ready = 1;
  if (++ready_count == n_users) {
    printf("{\"event\":\"ready\"}\n");
    fflush(stdout);
  }
}

/** An ImEvent for `u`: a Reply (an ack), Entries (deliveries) or Synced (the user is ready). */
static void on_im_event(struct user *u, const uint8_t *p, size_t n, double now) {
  struct reader event = reader_of(p, n);
  while (next_field(&event)) {
    if (event.wire != 2) continue;
    if (event.field == 3) {
      became_ready(u); /* Synced: the Sync (request id 0, so no Reply) is done and the feed attached */
    } else if (event.field == 1) {
      struct reader reply = reader_of(event.bytes, event.len);
      uint32_t request_id = 0;
      int ok = 0;
      const uint8_t *code = (const uint8_t *)"";
      size_t code_len = 0;
      while (next_field(&reply)) {
        if (reply.field == 1 && reply.wire == 0) request_id = (uint32_t)reply.value;
        else if (reply.field == 2 && reply.wire == 0) ok = reply.value != 0;
        else if (reply.field == 3 && reply.wire == 2) code = reply.bytes, code_len = reply.len;
      }
      /* A refusal of a send forgotten after its step is ignored, as its ack would be. */
      if (!ok && u->ring[request_id % (uint32_t)ring].request_id == request_id && request_id != 0) {
        fprintf(stderr, "im-load: %s: send refused: %.*s\n", u->name, (int)code_len, code);
        exit(1);
      }
      on_ack(u, request_id, now);
    } else if (event.field == 2) {
      struct reader entries = reader_of(event.bytes, event.len);
      uint32_t items = 0;
      while (next_field(&entries)) {
        if (entries.field != 1 || entries.wire != 2) continue;
        struct reader item = reader_of(entries.bytes, entries.len);
        const uint8_t *message = NULL;
        size_t message_len = 0;
        while (next_field(&item)) {
          if (item.field == 1 && item.wire == 0) u->ack_seq = item.value;
          else if (item.field == 2 && item.wire == 2) message = item.bytes, message_len = item.len;
        }
        items++;
        if (message == NULL) continue;
        struct reader m = reader_of(message, message_len);
        const uint8_t *recipient = NULL, *body = NULL;
        size_t recipient_len = 0, body_len = 0;
        while (next_field(&m)) {
          if (m.field == 3 && m.wire == 2) recipient = m.bytes, recipient_len = m.len;
          else if (m.field == 5 && m.wire == 2) body = m.bytes, body_len = m.len;
        }
        /* Each message also reaches its sender's own inbox: only the recipient's copy is a delivery. */
        if (body != NULL && recipient_len == u->name_len && memcmp(recipient, u->name, recipient_len) == 0) on_delivery(body, body_len, now);
      }
      if (items == 0) continue;
      u->unacked += items;
      if (u->unacked >= (uint32_t)ack_every) flush_ack(u);
      else if (!u->queued) {
        u->queued = 1;
        u->first_unacked_at = now;
        u->next_unacked = -1;
        if (unacked_tail >= 0) users[unacked_tail].next_unacked = (int)(u - users);
        else unacked_head = (int)(u - users);
        unacked_tail = (int)(u - users);
      }
    }
  }
}

static void on_data(struct user *u, const uint8_t *payload, uint32_t length) {
  /* Credit back as PROTOCOL.md §7 says: once half a window is owed, per session and per connection. */
  u->owed_session += length;
  u->owed_connection += length;
  uint8_t wu[2 * (HEADER_SIZE + 4)];
  size_t n = 0;
  if (u->owed_session >= session_window / 2) {
    uint32_t inc = htonl((uint32_t)u->owed_session);
    put_header(wu, T_WINDOW_UPDATE, 0, 1, 4);
    memcpy(wu + HEADER_SIZE, &inc, 4);
    n += HEADER_SIZE + 4;
    u->owed_session = 0;
  }
  if (u->owed_connection >= connection_window / 2) {
    uint32_t inc = htonl((uint32_t)u->owed_connection);
    put_header(wu + n, T_WINDOW_UPDATE, 0, 0, 4);
    memcpy(wu + n + HEADER_SIZE, &inc, 4);
    n += HEADER_SIZE + 4;
    u->owed_connection = 0;
  }
  if (n > 0) write_bytes(u, wu, n);
  double now = now_ms();
  if (!echo) {
    on_im_event(u, payload, length, now);
    return;
  }
  if (length < 16) return;
  uint32_t request_id;
  memcpy(&request_id, payload + 12, 4);
  on_ack(u, request_id, now);
  on_delivery(payload, length, now);
}

static void on_frame(struct user *u, const uint8_t *f, uint32_t length) {
  const uint8_t *payload = f + HEADER_SIZE;
  switch (f[2]) {
    case T_DATA:
      on_data(u, payload, length);
      break;
    case T_PING: {
      uint8_t pong[HEADER_SIZE + 64];
      size_t n = pong_frame(pong, payload, length);
      if (n > 0) write_bytes(u, pong, n);
      break;
    }
    case T_OPEN_OK:
      if (u->open) break;
      u->open = 1;
      if (u->after_open_len > 0) write_bytes(u, u->after_open, u->after_open_len);
      else became_ready(u);
      break;
    case T_OPEN_FAIL:
      fprintf(stderr, "im-load: %s: OPEN refused\n", u->name);
      exit(1);
  }
}

/** framer_feed's view of on_frame: goes on while the connection is open. */
static int frame_of(void *u, const uint8_t *f, uint32_t length) {
  on_frame(u, f, length);
  return !((struct user *)u)->closed;
}

static void on_close(struct user *u) {
  epoll_ctl(ep, EPOLL_CTL_DEL, u->fd, NULL);
  close(u->fd);
  u->closed = 1;
  closed_count++;
  fprintf(stderr, "im-load: %s: connection closed by the proxy (%d closed)\n", u->name, closed_count);
}

static void start_connect(int i) {
  users[i].fd = connect_loopback(ep, port, (uint32_t)i);
}

static void on_connected(struct user *u) {
  check_connected(u->fd);
  u->connected = 1;
  watch(u, EPOLLIN);
  write_bytes(u, u->hello, u->hello_len);
  if (started < n_users) start_connect(started++);
}

/* ---- commands and steps ---- */

static void print_latency(const char *name, const struct latency *h) {
  printf(",\"%s\":[", name);
  for (int i = 0; i < BUCKETS; i++) printf(i ? ",%ld" : "%ld", h->counts[i]);
  putchar(']');
}

static void end_step(void) {
  printf("{\"sent\":%ld,\"acked\":%ld,\"delivered\":%ld,\"overrun\":%s,\"closed\":%d,\"early\":[%.3f,%ld],\"late\":[%.3f,%ld],\"cpuUs\":%.0f",
         sent, acked, delivered, overrun ? "true" : "false", closed_count, early_sum, early_n, late_sum, late_n, cpu_us() - cpu_at_start);
  print_latency("ack", &ack_latency);
  print_latency("recipient", &recipient_latency);
  printf("}\n");
  fflush(stdout);
  phase = IDLE;
}

static void add_user(char *line) {
  char name[MAX_NAME], partner[MAX_NAME];
  static char hello[8192], after[8192];
  if (sscanf(line, "user %63s %63s %8191s %8191s", name, partner, hello, after) != 4) fail("bad user line");
  if (n_users == cap_users) {
    cap_users = cap_users ? cap_users * 2 : 256;
    users = realloc(users, (size_t)cap_users * sizeof *users);
  }
  struct user *u = &users[n_users++];
  memset(u, 0, sizeof *u);
  strcpy(u->name, name);
  strcpy(u->partner, partner);
  u->name_len = strlen(name);
  u->partner_len = strlen(partner);
  u->hello = from_hex(hello, &u->hello_len);
  u->after_open = from_hex(after, &u->after_open_len);
  u->next_request_id = 1;
  u->next_unacked = -1;
  u->ring = calloc((size_t)ring, sizeof *u->ring);
}

static void command(char *line) {
  if (!strncmp(line, "user ", 5)) {
    add_user(line);
  } else if (!strcmp(line, "connect")) {
    for (; started < n_users && started < CONNECT_BATCH; started++) start_connect(started);
  } else if (!strncmp(line, "step ", 5)) {
    unsigned no;
    if (sscanf(line, "step %u %lf %lf %lf %lf %lf", &no, &rate, &step_ms, &settle_ms, &deliver_ms, &max_behind_s) != 6) fail("bad step line");
    step_no = no;
    sent = acked = delivered = early_n = late_n = 0;
    early_sum = late_sum = 0;
    overrun = 0;
    memset(&ack_latency, 0, sizeof ack_latency);
    memset(&recipient_latency, 0, sizeof recipient_latency);
    cpu_at_start = cpu_us();
    step_start = now_ms();
    phase = OFFER;
  } else if (!strncmp(line, "drain ", 6)) {
    double ms;
    if (sscanf(line, "drain %lf %lf", &ms, &quiet_ms) != 2) fail("bad drain line");
    deadline = now_ms() + ms;
    phase = DRAIN;
  } else {
    fail("unknown command");
  }
}

/** Reads whatever stdin has and runs each complete line. */
static void on_stdin(void) {
  static char buf[1 << 16];
  static size_t len;
  ssize_t r = read(0, buf + len, sizeof buf - 1 - len);
  if (r == 0) exit(0); /* the driver is gone */
  if (r < 0) return;
  len += (size_t)r;
  char *start = buf, *nl;
  while ((nl = memchr(start, '\n', (size_t)(buf + len - start))) != NULL) {
    *nl = 0;
    command(start);
    start = nl + 1;
  }
  len = (size_t)(buf + len - start);
  memmove(buf, start, len);
  if (len == sizeof buf - 1) fail("stdin line too long");
}

/** Moves the step on: offers what is due, then settles, delivers, drains. Returns ms until it next needs to run. */
static int advance(double now) {
  switch (phase) {
    case OFFER: {
      double elapsed = now - step_start;
      long due = (long)floor((fmin(elapsed, step_ms) / 1000) * rate);
      for (; sent < due; sent++) send_one(&users[next_user++ % n_users]);
      /* Far behind: the step has failed; offering the rest would only build a backlog the next steps pay for. */
      overrun = sent - acked > rate * max_behind_s;
      if (elapsed < step_ms && !overrun) return TICK_MS;
      phase = SETTLE;
      deadline = now + settle_ms;
    }
    /* fall through */
    case SETTLE:
      if (acked < sent && now < deadline) return 20;
      /* Recipients get the message after the sender's ack is sent: let the last deliveries land too. */
      phase = DELIVER;
      deadline = now + deliver_ms;
      /* fall through */
    case DELIVER:
      if (delivered < sent && now < deadline) return 20;
      end_step();
      return 20;
    case DRAIN:
      if ((outstanding > 0 || total_delivered < total_acked) && now < deadline) return 50;
      phase = QUIET;
      deadline = now + quiet_ms;
      /* fall through */
    case QUIET:
      if (now < deadline) return (int)(deadline - now) + 1;
      for (int i = 0; i < n_users; i++) memset(users[i].ring, 0, (size_t)ring * sizeof *users[i].ring);
      printf("{\"drained\":%s}\n", outstanding == 0 ? "true" : "false");
      fflush(stdout);
      outstanding = 0;
      phase = IDLE;
      return 20;
    case IDLE:
      return 20;
  }
  return 20;
}

int main(int argc, char **argv) {
  for (int i = 1; i + 1 < argc; i += 2) {
    const char *k = argv[i], *v = argv[i + 1];
    if (!strcmp(k, "--port")) port = atoi(v);
    else if (!strcmp(k, "--business")) echo = strcmp(v, "echo") == 0;
    else if (!strcmp(k, "--size")) body_bytes = atoi(v);
    else if (!strcmp(k, "--ring")) ring = atoi(v);
    else if (!strcmp(k, "--ack-every")) ack_every = atoi(v);
    else if (!strcmp(k, "--nap-us")) nap_us = atoi(v);
    else if (!strcmp(k, "--ack-delay-ms")) ack_delay_ms = atof(v);
    else if (!strcmp(k, "--session-window")) session_window = strtoull(v, NULL, 10);
    else if (!strcmp(k, "--connection-window")) connection_window = strtoull(v, NULL, 10);
  }
  if (port <= 0 || body_bytes < 16 || body_bytes > 1024 || ring <= 0) fail("usage: --port P [--business im|echo] [--size 16..1024] [--ring N]");
  setvbuf(stdout, NULL, _IOFBF, 1 << 16);
  ep = epoll_create1(0);
  struct epoll_event in = {.events = EPOLLIN, .data.u32 = STDIN_TAG};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, 0, &in) < 0) die("epoll_ctl stdin");
  struct epoll_event events[512];
  int timeout = 20;
  for (;;) {
    int n = epoll_wait(ep, events, 512, timeout);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int e = 0; e < n; e++) {
      uint32_t tag = events[e].data.u32;
      if (tag == STDIN_TAG) {
        on_stdin();
        continue;
      }
      struct user *u = &users[tag];
      if (u->closed) continue;
      if (!u->connected) {
        on_connected(u);
        continue;
      }
      if ((events[e].events & EPOLLOUT) && u->out_len > 0) flush_out(u);
      if (!(events[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
      ssize_t r = read(u->fd, rbuf, sizeof rbuf);
      if (r > 0) framer_feed(&u->in, rbuf, (size_t)r, frame_of, u, "im-load");
      else if (r == 0 || (errno != EAGAIN && errno != EINTR)) on_close(u);
    }
    double now = now_ms();
    if (!echo) flush_due_acks(now);
    timeout = advance(now);
    if (nap_us > 0 && n < 512) usleep((useconds_t)nap_us);
  }
}
