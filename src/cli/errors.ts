/**
 * How the `vss` command reports failures: one line saying what went wrong, one line saying what to do,
 * a non-zero exit code; the stack only with --verbose (a user's mistake is not a crash).
 */

/** A mistake the user can fix (bad option, missing file): shown without a stack. */
export class UserError extends Error {
  constructor(message: string, readonly hint?: string, readonly exitCode = 1) {
    super(message);
    this.name = 'UserError';
  }
}

/** The message and hint of any error; errors from the libraries may carry a `hint` too. */
export function describeError(err: unknown): { message: string; hint?: string } {
  if (!(err instanceof Error)) return { message: String(err) };
  const rawHint = (err as { hint?: unknown }).hint;
  let message = err.message;
  let hint = typeof rawHint === 'string' && rawHint.trim() !== '' ? rawHint.trim() : undefined;
  if (hint !== undefined) {
    // Some errors repeat their hint inside the message (DatasetNotFoundError): show it once.
    const at = message.lastIndexOf(hint);
    if (at > 0) message = message.slice(0, at);
    hint = hint.replace(/^hint:\s*/i, '');
  }
  message = message.trim();
  const lines = message.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  return { message: lines.join(' — ') || err.name, hint };
}

/** The text printed for a failed command (ends with a newline). */
export function formatError(err: unknown, verbose: boolean): string {
  const { message, hint } = describeError(err);
  const lines = [`vss: ${message}`];
  if (hint) lines.push(`hint: ${hint}`);
  const expected = err instanceof UserError || hint !== undefined;
  if (verbose && err instanceof Error && err.stack) lines.push(err.stack);
  else if (!expected) lines.push('hint: run with --verbose to see where it happened');
  return `${lines.join('\n')}\n`;
}

/** The exit code for a failed command: a UserError's own, else 1. */
export function exitCodeOf(err: unknown): number {
  return err instanceof UserError ? err.exitCode : 1;
}
