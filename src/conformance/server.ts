/**
 * The conformance server (PROTOCOL.md §14): a livemux server that, instead of proxying, plays scripted
 * scenarios against a client under test and reports, per scenario, whether the client did what the
 * protocol asks. A client names the scenario it runs in its HELLO token, `conformance:<scenario>`, and
 * every connection with that token (reconnects included) belongs to that scenario's script.
 */
import net from 'node:net';
import { Code } from '../protocol/codes.js';
import { FrameType } from '../protocol/constants.js';
import { decodeOpen, type Hello } from '../protocol/messages.js';
import { Peer, ScenarioFailure, businessOf } from './peer.js';
import { SCENARIOS, type Scenario } from './scenarios.js';

/** The token prefix a client under test sends in HELLO, followed by the scenario's name. */
export const TOKEN_PREFIX = 'conformance:';
/** The business the driver opens its session on, and the one it reports an ended session with. */
export const BUSINESS = 'conformance';
export const REPORT_BUSINESS = 'conformance-report';

/** What a driver reported about a session when it ended (an OPEN of REPORT_BUSINESS). */
export interface SessionReport {
  /** The code the SDK said the session ended with. */
  readonly code: number;
  /** Messages the application received on it. */
  readonly received: string[];
}

export interface Verdict {
  readonly scenario: string;
  readonly passed: boolean;
  /** Why it failed, or what was checked. */
  readonly detail: string;
  readonly ms: number;
}

/** What a scenario script gets: its connections, in order, and the driver's reports. */
export class ScenarioContext {
  private readonly pending: Peer[] = [];
  private readonly waiting: ((peer: Peer) => void)[] = [];
  private readonly reportQueue: SessionReport[] = [];
  private readonly reportWaiters: ((r: SessionReport) => void)[] = [];
  readonly peers: Peer[] = [];
  finished = false;

  constructor(readonly address: { host: string; port: number }) {}

  /** The scenario's next connection (its HELLO has arrived), or a failure after `timeoutMs`. */
  connection(timeoutMs: number, what = 'a connection'): Promise<Peer> {
    const peer = this.pending.shift();
    if (peer) return Promise.resolve(peer);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.splice(this.waiting.indexOf(take), 1);
        reject(new ScenarioFailure(`expected ${what} within ${timeoutMs} ms; none came`));
      }, timeoutMs);
      const take = (p: Peer): void => {
        clearTimeout(timer);
        resolve(p);
      };
      this.waiting.push(take);
    });
  }

  /** Resolves if no new connection arrives within `ms`. */
  async noConnection(ms: number, what: string): Promise<void> {
    const started = performance.now();
    try {
      await this.connection(ms);
    } catch (err) {
      if (err instanceof ScenarioFailure) return;
      throw err;
    }
    throw new ScenarioFailure(`${what}: the client connected again after ${Math.round(performance.now() - started)} ms`);
  }

  /** The driver's next report of an ended session. */
  report(timeoutMs: number): Promise<SessionReport> {
    const r = this.reportQueue.shift();
    if (r) return Promise.resolve(r);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const last = this.peers.at(-1);
        reject(new ScenarioFailure(`expected the driver to report the session's end within ${timeoutMs} ms${last ? `; received ${last.describeLog()}` : ''}`));
      }, timeoutMs);
      this.reportWaiters.push((x) => {
        clearTimeout(timer);
        resolve(x);
      });
    });
  }

  /** @internal */
  arrived(peer: Peer): void {
    this.peers.push(peer);
    const take = this.waiting.shift();
    if (take) take(peer);
    else this.pending.push(peer);
  }

  /** @internal */
  reported(r: SessionReport): void {
    const waiter = this.reportWaiters.shift();
    if (waiter) waiter(r);
    else this.reportQueue.push(r);
  }
}

export interface ConformanceServerOptions {
  host?: string;
  /** 0 = any free port. */
  port?: number;
  /** Scenarios to play; default all. */
  scenarios?: readonly string[];
  /** Called with each verdict as it is reached. */
  onVerdict?: (v: Verdict) => void;
}

/**
 * Listens for clients under test; each scenario's script runs from its first connection and ends in
 * a verdict. After a verdict, the scenario's connections (and any later one) get ERROR AUTH_FAILED,
 * which a conforming client takes as final: that is how the driver knows to move on.
 */
export class ConformanceServer {
  readonly verdicts = new Map<string, Verdict>();
  private readonly contexts = new Map<string, ScenarioContext>();
  private readonly selected: readonly Scenario[];
  private readonly listener: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private allDone!: () => void;
  /** Resolves once every selected scenario has a verdict. */
  readonly done = new Promise<void>((resolve) => (this.allDone = resolve));

  private constructor(private readonly options: ConformanceServerOptions) {
    const names = options.scenarios;
    this.selected = names && names.length > 0 ? names.map(scenarioNamed) : SCENARIOS;
    this.listener = net.createServer((socket) => this.accept(socket));
  }

  static async start(options: ConformanceServerOptions = {}): Promise<ConformanceServer> {
    const server = new ConformanceServer(options);
    await new Promise<void>((resolve, reject) => {
      server.listener.once('error', reject);
      server.listener.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
    });
    return server;
  }

  get address(): { host: string; port: number } {
    const a = this.listener.address() as net.AddressInfo;
    return { host: a.address, port: a.port };
  }

  /** Names of the scenarios this server plays. */
  get scenarios(): string[] {
    return this.selected.map((s) => s.name);
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise((resolve) => this.listener.close(resolve));
  }

  private accept(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    new Peer(socket, (peer, hello) => this.route(peer, hello));
  }

  private route(peer: Peer, hello: Hello): void {
    const name = hello.token.startsWith(TOKEN_PREFIX) ? hello.token.slice(TOKEN_PREFIX.length) : '';
    const scenario = this.selected.find((s) => s.name === name);
    if (!scenario) return peer.end(Code.AUTH_FAILED, `conformance: no scenario "${name}" (token "${TOKEN_PREFIX}<scenario>")`);
    if (this.verdicts.has(name)) return peer.end(Code.AUTH_FAILED, `conformance: scenario ${name} is over`);
    let ctx = this.contexts.get(name);
    if (!ctx) {
      this.contexts.set(name, (ctx = new ScenarioContext(this.address)));
      void this.play(scenario, ctx);
    }
    this.watchReports(peer, ctx);
    ctx.arrived(peer);
  }

  /** Answers the driver's report OPENs on any connection of the scenario, and records them. */
  private watchReports(peer: Peer, ctx: ScenarioContext): void {
    const poll = (): void => {
      void peer
        .next((f) => f.type === FrameType.OPEN && businessOf(f) === REPORT_BUSINESS, 3_600_000, 'report')
        .then((f) => {
          const { metadata } = decodeOpen(f.payload);
          peer.status(FrameType.OPEN_FAIL, f.sessionId, Code.UNKNOWN_BUSINESS, 'conformance: report noted');
          ctx.reported({ code: Number(metadata.code ?? -1), received: metadata.received ? (JSON.parse(metadata.received) as string[]) : [] });
          poll();
        }, () => {});
    };
    poll();
  }

  private async play(scenario: Scenario, ctx: ScenarioContext): Promise<void> {
    const started = performance.now();
    let passed = true;
    let detail = scenario.checks;
    try {
      await withTimeout(scenario.run(ctx), scenario.timeoutMs ?? 20_000, scenario.name);
    } catch (err) {
      passed = false;
      detail = err instanceof ScenarioFailure ? err.message : `conformance server fault: ${(err as Error).stack ?? String(err)}`;
    }
    ctx.finished = true;
    const verdict: Verdict = { scenario: scenario.name, passed, detail, ms: Math.round(performance.now() - started) };
    this.verdicts.set(scenario.name, verdict);
    for (const peer of ctx.peers) if (!peer.ended) peer.end(Code.AUTH_FAILED, `conformance: scenario ${scenario.name} ${passed ? 'passed' : 'failed'}`);
    this.options.onVerdict?.(verdict);
    if (this.verdicts.size === this.selected.length) this.allDone();
  }
}

function scenarioNamed(name: string): Scenario {
  const s = SCENARIOS.find((x) => x.name === name);
  if (!s) throw new Error(`conformance: no scenario "${name}" (livemux conformance-server --list)`);
  return s;
}

async function withTimeout<T>(p: Promise<T>, ms: number, name: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new ScenarioFailure(`scenario ${name} did not finish within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
