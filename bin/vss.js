#!/usr/bin/env node
// The `vss` command. The TypeScript sources compile to dist/ during `npm install` (the prepare script).
import { main } from '../dist/src/cli/main.js';

main(process.argv).catch((err) => {
  const verbose = process.argv.includes('--verbose');
  console.error(`vss: ${err instanceof Error ? err.message : String(err)}`);
  if (verbose && err instanceof Error && err.stack) console.error(err.stack);
  else console.error('(run with --verbose for the stack)');
  process.exitCode = 1;
});
