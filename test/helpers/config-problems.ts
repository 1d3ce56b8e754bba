import { expect } from 'vitest';
import { ConfigError } from '../../src/protocol/errors.js';

/** The problems listed by the ConfigError `fn` throws; fails the test if it throws anything else or nothing. */
export function problems(fn: () => unknown): readonly string[] {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error('expected a ConfigError');
}
