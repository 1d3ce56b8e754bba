import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createJwtVerifier } from '../../src/proxy/auth.js';
import { runCliCaptured } from '../helpers/cli.js';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'livemux.js');

/** The subcommands `livemux help` lists (colleagues' new ones included, so each gets its help tested). */
async function listedCommands(): Promise<string[]> {
  const { stdout } = await runCliCaptured(['help']);
  const section = stdout.slice(stdout.indexOf('Commands:'));
  return [...section.matchAll(/^ {2}([a-z][\w-]*)/gm)].map((m) => m[1]!).filter((name) => name !== 'help');
}

/** A stack trace line, which no user-facing output may contain. */
const STACK = /^\s+at .+:\d+:\d+\)?$/m;

describe('livemux help', () => {
  it('exits 0 and lists every command with a description', async () => {
    const run = await runCliCaptured(['help']);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^Usage: livemux \[options\] \[command\]/);
    const names = await listedCommands();
    expect(names).toEqual(expect.arrayContaining(['up', 'start', 'echo-backend', 'chat-backend', 'client', 'token', 'check']));
  });

  it('--help and -h exit 0 too; no command at all is a usage error (2) that still shows the commands', async () => {
    for (const flag of ['--help', '-h']) expect((await runCliCaptured([flag])).code).toBe(0);
    const bare = await runCliCaptured([]);
    expect(bare.code).toBe(2);
    expect(bare.stderr).toContain('Commands:');
  });

  it('--version prints the package version', async () => {
    const run = await runCliCaptured(['--version']);
    expect(run).toMatchObject({ code: 0, stdout: expect.stringMatching(/^\d+\.\d+\.\d+\n$/) });
  });

  it('an unknown command is one line, exit 2', async () => {
    const run = await runCliCaptured(['strat']);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/^livemux: unknown command 'strat'\n\(Did you mean start\?\)\n/);
  });
});

describe('every subcommand has its own help', () => {
  it.each(['--help', '-h'])('`livemux <command> %s` prints its usage and options, exit 0', async (flag) => {
    const names = await listedCommands();
    expect(names.length).toBeGreaterThanOrEqual(7);
    for (const name of names) {
      const run = await runCliCaptured([name, flag]);
      expect(run, name).toMatchObject({ code: 0, stderr: '' });
      expect(run.stdout, name).toMatch(new RegExp(`^Usage: livemux ${name} `));
      expect(run.stdout, name).toContain('Options:');
      expect(run.stdout, name).not.toMatch(STACK);
    }
  });

  it('`livemux help <command>` is the same page', async () => {
    for (const name of await listedCommands()) {
      expect((await runCliCaptured(['help', name])).stdout, name).toBe((await runCliCaptured([name, '--help'])).stdout);
    }
  });

  it('start and up say that SIGHUP reloads routes.yaml, and take --config', async () => {
    for (const name of ['start', 'up']) {
      const { stdout } = await runCliCaptured([name, '--help']);
      expect(stdout, name).toMatch(/SIGHUP\s+reloads\s+routes\.yaml/);
      expect(stdout, name).toContain('--config <file>');
      expect(stdout, name).toContain('./livemux.yaml');
    }
  });
});

describe('usage errors are one line naming the command, exit 2', () => {
  it.each([
    [['start', '--bogus'], "livemux start: unknown option '--bogus'"],
    [['up', '--config'], "livemux up: option '--config <file>' argument missing"],
    [['token', '--sub', 'a', '--ttl', 'abc'], "livemux token: option '--ttl <seconds>' argument 'abc' is invalid. expected an integer >= 1 (seconds)"],
    [['token'], "livemux token: required option '--sub <user>' not specified"],
    [['token', '--sub', 'a', '--claim', 'novalue'], "livemux token: option '--claim <key=value>' argument 'novalue' is invalid. expected KEY=VALUE"],
    [['echo-backend', '--port', '70000'], "livemux echo-backend: option '--port <port>' argument '70000' is invalid. expected an integer 0..65535"],
    [['chat-backend', '--word-mode', 'shout'], "livemux chat-backend: option '--word-mode <mode>' argument 'shout' is invalid. Allowed choices are reject, mask."],
    [['chat-backend', '--log-level', 'loud'], "livemux chat-backend: option '--log-level <level>' argument 'loud' is invalid. Allowed choices are trace, debug, info, warn, error, fatal, silent."],
    [['client', '--meta', 'room'], "livemux client: option '--meta <key=value>' argument 'room' is invalid. expected KEY=VALUE"],
    [['client', '--insecure', '--token', 't'], 'livemux client: --insecure: only meaningful with --tls'],
    [['check'], "livemux check: missing required argument 'file'"],
  ])('%j', async (argv, line) => {
    const run = await runCliCaptured(argv);
    expect(run.code).toBe(2);
    expect(run.stderr.split('\n')[0]).toBe(line);
    expect(run.stderr).not.toMatch(STACK);
  });
});

describe('livemux check', () => {
  it('--help is help, not a file named "--help"', async () => {
    const run = await runCliCaptured(['check', '--help']);
    expect(run.code).toBe(0);
    expect(run.stdout).not.toContain('cannot read');
  });

  it('a missing file is one line naming it, exit 1', async () => {
    const run = await runCliCaptured(['check', 'missing.yaml'], { cwd: tmpdir() });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^livemux check: missing\.yaml: cannot read \(ENOENT: no such file or directory, open 'missing\.yaml'\)\n$/);
  });

  it('an invalid routes file lists every problem with file:line:col, exit 1; a valid one says ok', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'livemux-cli-'));
    const bad = join(dir, 'routes.yaml');
    writeFileSync(bad, 'version: 1\nroutes:\n  - business: echo\n    pool: nowhere\npools: {}\n');
    const run = await runCliCaptured(['check', bad]);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(`${bad}:4:`);
    expect(run.stderr).not.toMatch(STACK);
    const good = await runCliCaptured(['check', join(import.meta.dirname, '..', '..', 'routes.yaml')]);
    expect(good).toMatchObject({ code: 0, stdout: expect.stringMatching(/routes\.yaml: ok\n$/) });
  });
});

describe('livemux token', () => {
  const verify = (secret: string, token: string) => createJwtVerifier({ secret }).verify(token.trim());

  it('mints for any user, with a role and extra claims, from $LIVEMUX_JWT_SECRET', async () => {
    const secret = 'token-test-secret-0123456789abcdef';
    const run = await runCliCaptured(['token', '--sub', 'carol', '--role', 'host', '--claim', 'tier=gold', '--ttl', '60'], {
      env: { LIVEMUX_JWT_SECRET: secret },
    });
    expect(run).toMatchObject({ code: 0, stderr: '' });
    const { userId, claims } = await verify(secret, run.stdout);
    expect(userId).toBe('carol');
    expect(claims).toMatchObject({ role: 'host', tier: 'gold' });
    expect((claims.exp as number) - (claims.iat as number)).toBe(60);
  });

  it('without a secret, uses the dev secret `livemux up` keeps in ./.livemux/dev-secret', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'livemux-cli-'));
    const none = await runCliCaptured(['token', '--sub', 'bob'], { cwd: dir });
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/^livemux token: no secret: pass --secret, set LIVEMUX_JWT_SECRET .*livemux up/);
    mkdirSync(join(dir, '.livemux'));
    writeFileSync(join(dir, '.livemux', 'dev-secret'), 'dev-secret-of-this-directory\n');
    const run = await runCliCaptured(['token', '--sub', 'bob'], { cwd: dir });
    expect(run.code).toBe(0);
    expect((await verify('dev-secret-of-this-directory', run.stdout)).userId).toBe('bob');
  });
});

describe('bin/livemux.js', () => {
  // The process wrapper: what a shell sees.
  it('sets the process exit status: 0 for help, 2 for a usage error, 1 for a failure', () => {
    const run = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', cwd: tmpdir() });
    expect(run('help').status).toBe(0);
    expect(run('start', '--help').status).toBe(0);
    const usage = run('token', '--ttl', 'abc', '--sub', 'x');
    expect(usage.status).toBe(2);
    expect(usage.stderr).not.toMatch(STACK);
    const failure = run('check', 'missing.yaml');
    expect(failure.status).toBe(1);
    expect(failure.stderr.trim().split('\n')).toHaveLength(1);
  });
});
