/**
 * `livemux conformance-server`: the conformance kit's server (PROTOCOL.md §14). The work is a function of
 * parsed options (`runConformanceServer`); `register` adds the command to the program.
 */
import type { Command } from '@commander-js/extra-typings';
import { ConformanceServer, type Verdict } from '../conformance/server.js';
import { SCENARIOS } from '../conformance/scenarios.js';
import { integer, port, type CliContext } from './command.js';

export interface ConformanceOptions {
  host: string;
  /** 0 = any free port (printed). */
  port: number;
  /** Scenario names; empty = all. */
  scenarios: string[];
  /** Print the scenarios and what each checks, then exit. */
  list: boolean;
  /** Run the TypeScript SDK's driver against the server too (a demonstration, and the kit's own test). */
  selfTest: boolean;
  /** Give up on scenarios without a verdict after this long (they fail as not run). */
  timeoutMs: number;
}

/** Plays the scenarios until each has a verdict; one JSON line per verdict; 0 when all passed. */
export async function runConformanceServer(options: ConformanceOptions, out: (line: string) => void = console.log): Promise<number> {
  if (options.list) {
    for (const s of SCENARIOS) out(JSON.stringify({ scenario: s.name, checks: s.checks }));
    return 0;
  }
  const server = await ConformanceServer.start({
    host: options.host,
    port: options.port,
    scenarios: options.scenarios,
    onVerdict: (v) => out(JSON.stringify({ event: 'verdict', ...v })),
  });
  out(JSON.stringify({ event: 'listening', host: server.address.host, port: server.address.port, scenarios: server.scenarios }));
  if (options.selfTest) {
    const { runScenarios } = await import('../conformance/driver.js');
    void runScenarios(server.scenarios, { ...server.address, concurrency: 6 });
  }
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<void>((resolve) => (timer = setTimeout(resolve, options.timeoutMs)));
  await Promise.race([server.done, deadline]);
  clearTimeout(timer);
  await server.close();
  const verdicts: Verdict[] = server.scenarios.map((name) => server.verdicts.get(name) ?? { scenario: name, passed: false, detail: 'not run: no client connected with this scenario\'s token', ms: 0 });
  const failed = verdicts.filter((v) => !v.passed);
  out(JSON.stringify({ event: 'summary', passed: verdicts.length - failed.length, failed: failed.map((v) => v.scenario), total: verdicts.length }));
  return failed.length === 0 ? 0 : 1;
}

/** `livemux conformance-server`, registered on the program (cli/command.ts). */
export function register(program: Command, cli: CliContext): void {
  program
    .command('conformance-server')
    .description('play the protocol conformance scenarios (PROTOCOL.md §14) against a client under test; exit 0 when all pass')
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--port <port>', 'port to listen on (0: any free port, printed)', port(0), 7900)
    .option('--scenario <names>', 'only these scenarios, comma-separated; repeatable', (text: string, previous: string[] = []) => [...previous, ...text.split(',').filter((s) => s !== '')])
    .option('--list', 'print the scenarios and what each checks, then exit', false)
    .option('--self-test', 'also run the TypeScript SDK\'s driver against it', false)
    .option('--timeout-ms <ms>', 'fail the scenarios still without a verdict after this long', integer(1, 'ms'), 600_000)
    .action(async (opts) => {
      cli.exitCode = await runConformanceServer(
        { host: opts.host, port: opts.port, scenarios: opts.scenario ?? [], list: opts.list, selfTest: opts.selfTest, timeoutMs: opts.timeoutMs },
        (line) => void cli.stdout.write(`${line}\n`),
      );
    });
}
