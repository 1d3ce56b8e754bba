import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { type FSWatcher, watch } from 'chokidar';
import type { Logger } from 'pino';
import { parseRoutesConfig } from '../config/routes-config.js';
import { changesOnly, diffRoutes } from '../config/routes-diff.js';
import type { Metrics } from '../observability/metrics.js';
import { ConfigError } from '../protocol/errors.js';
import { createRouteTable } from '../routing/route-table.js';
import type { RouteTable } from '../routing/types.js';

/** What the admin status page shows about the routes file. */
export interface RoutesStatus {
  file: string;
  version: number;
  loadedAt: string;
  lastReloadError: string | null;
  lastReloadErrorAt: string | null;
}

export interface RouteReloaderOptions {
  logger: Logger;
  metrics: Metrics;
  /** Called after every successful swap with the new and the previous table. */
  onSwap(table: RouteTable, previous: RouteTable): void;
  /** Quiet time after the last file event before reading the file (editors write in bursts). */
  debounceMs?: number;
  /** How long after a burst of events the file is read once more. */
  recheckMs?: number;
  /** Safety-net read interval, events or not; 0 disables it. */
  pollMs?: number;
}

/**
 * Owns the live route table. `reload` reads routes.yaml, validates it and swaps the whole table in one
 * assignment; an invalid file keeps the last good table, records the error (status page, warn log,
 * `livemux_route_reloads_total{result="invalid"}`) and a later fix is applied as usual.
 *
 * The watcher observes the file's folder rather than the file: editors save by writing a temporary file
 * and renaming it over the original, and Kubernetes swaps a `..data` symlink; both replace the inode a
 * file watch would be attached to. Every event in the folder leads to a read, and a content hash makes
 * unrelated events and repeated saves of the same content no-ops.
 *
 * Events alone are not trusted with the last word: with saves a few tens of milliseconds apart the
 * watcher was seen to report only every other one, missing the final state. So each burst of events is
 * followed by one more read a little later, and the file is also read on a slow timer (which also covers
 * file systems without change notification). Reads of unchanged content cost a hash and nothing else.
 */
export class RouteReloader {
  private current: RouteTable;
  private loadedAt = new Date();
  private contentHash: string;
  private lastError: { message: string; at: Date; unreadable: boolean } | null = null;
  private watcher: FSWatcher | null = null;
  private timer: NodeJS.Timeout | null = null;
  private recheck: NodeJS.Timeout | null = null;
  private poll: NodeJS.Timeout | null = null;
  readonly file: string;

  constructor(
    file: string,
    private readonly opts: RouteReloaderOptions,
  ) {
    this.file = resolve(file);
    const text = readFileSync(this.file, 'utf8');
    this.current = createRouteTable(parseRoutesConfig(text, this.file), 1);
    this.contentHash = hash(text);
  }

  /** The table new sessions are routed by. */
  get table(): RouteTable {
    return this.current;
  }

  /**
   * Re-reads the file now (SIGHUP, watcher, admin). Returns true when a new table is in effect, false
   * when the file is unchanged, unreadable or invalid (the previous table stays).
   */
  reload(trigger: string): boolean {
    const { logger, metrics } = this.opts;
    const started = performance.now();
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch (err) {
      // Mid-swap (renamed away for an instant) or deleted: keep serving; the next event retries.
      return this.fail(trigger, `${this.file}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, true);
    }
    const digest = hash(text);
    if (digest === this.contentHash) {
      // Back after vanishing for a moment with the content in effect: nothing is wrong any more.
      if (this.lastError?.unreadable) this.lastError = null;
      return false;
    }
    let table: RouteTable;
    try {
      table = createRouteTable(parseRoutesConfig(text, this.file), this.current.version + 1, this.current);
    } catch (err) {
      if (err instanceof ConfigError) {
        this.contentHash = digest; // do not re-report the same invalid content on every event
        this.observe('invalid', started);
        return this.fail(trigger, err.message);
      }
      throw err;
    }
    const previous = this.current;
    this.current = table;
    this.contentHash = digest;
    this.loadedAt = new Date();
    this.lastError = null;
    metrics.routeReloads.inc({ result: 'ok' });
    this.opts.onSwap(table, previous);
    const durationMs = this.observe('ok', started);
    const changes = changesOnly(diffRoutes(previous.config, table.config));
    logger.info({ version: table.version, trigger, file: this.file, durationMs, changes }, 'routes reloaded');
    return true;
  }

  /** Records a reload's duration (livemux_route_reload_duration_seconds); returns it in ms. */
  private observe(result: 'ok' | 'invalid', started: number): number {
    const ms = performance.now() - started;
    this.opts.metrics.reloadDuration.series({ result }).observe(ms / 1000);
    return Math.round(ms * 1000) / 1000;
  }

  /** Starts watching the file's folder; resolves once the watcher is ready. */
  async watch(): Promise<void> {
    const name = basename(this.file);
    this.watcher = watch(dirname(this.file), { depth: 0, ignoreInitial: true });
    this.watcher.on('all', (_event, path) => {
      // Unrelated files in the folder are ignored unless they may be the symlinked data the file points at.
      const base = basename(path);
      if (base !== name && !base.startsWith('..')) return;
      if (this.timer) clearTimeout(this.timer);
      this.timer = setTimeout(() => {
        this.timer = null;
        this.reload('watch');
        if (this.recheck) clearTimeout(this.recheck);
        this.recheck = setTimeout(() => this.reload('recheck'), this.opts.recheckMs ?? 250);
      }, this.opts.debounceMs ?? 20);
    });
    const pollMs = this.opts.pollMs ?? 5_000;
    if (pollMs > 0) this.poll = setInterval(() => this.reload('poll'), pollMs).unref();
    this.watcher.on('error', (err) => this.opts.logger.warn({ err }, 'routes watcher error'));
    await new Promise<void>((ready) => this.watcher!.once('ready', ready));
  }

  status(): RoutesStatus {
    return {
      file: this.file,
      version: this.current.version,
      loadedAt: this.loadedAt.toISOString(),
      lastReloadError: this.lastError?.message ?? null,
      lastReloadErrorAt: this.lastError?.at.toISOString() ?? null,
    };
  }

  async close(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    if (this.recheck) clearTimeout(this.recheck);
    if (this.poll) clearInterval(this.poll);
    await this.watcher?.close();
  }

  private fail(trigger: string, message: string, unreadable = false): false {
    this.lastError = { message, at: new Date(), unreadable };
    this.opts.metrics.routeReloads.inc({ result: 'invalid' });
    this.opts.logger.warn({ trigger, version: this.current.version, problems: message }, 'routes reload rejected; keeping the last good config');
    return false;
  }
}

function hash(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}
