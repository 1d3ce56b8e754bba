/**
 * `livemux conformance-server`: the conformance kit's server (PROTOCOL.md §14). The work is a function of
 * parsed options, so any command-line front end can call it; `runConformanceCommand` is the argv one.
 */
import { parseArgs } from 'node:util';
import { ConformanceServer, type Verdict } from '../conformance/server.js';
import { SCENARIOS } from '../conformance/scenarios.js';

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

export async function runConformanceCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string', default: '7900' },
      scenario: { type: 'string', multiple: true, default: [] },
      list: { type: 'boolean', default: false },
      'self-test': { type: 'boolean', default: false },
      'timeout-ms': { type: 'string', default: '600000' },
    },
  });
  const port = Number(values.port);
  const timeoutMs = Number(values['timeout-ms']);
  if (!Number.isInteger(port) || port < 0 || port > 65_535 || !Number.isInteger(timeoutMs) || timeoutMs <= 0) {
    process.stderr.write('livemux conformance-server: --port must be 0-65535 and --timeout-ms a positive integer\n');
    return 2;
  }
  return runConformanceServer({
    host: values.host,
    port,
    scenarios: values.scenario.flatMap((s) => s.split(',')).filter((s) => s !== ''),
    list: values.list,
    selfTest: values['self-test'],
    timeoutMs,
  });
}
