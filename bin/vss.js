#!/usr/bin/env node
// The `vss` command. The TypeScript sources compile to dist/ during `npm install` (the prepare script).
import { main } from '../dist/src/cli/main.js';
import { exitCodeOf, formatError } from '../dist/src/cli/errors.js';

main(process.argv).catch((err) => {
  // One line saying what went wrong, one saying what to do; the stack only with --verbose.
  process.stderr.write(formatError(err, process.argv.includes('--verbose')));
  process.exitCode = exitCodeOf(err);
});
