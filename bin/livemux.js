#!/usr/bin/env node
// Thin launcher so the `livemux` command runs the compiled CLI (build with `npm run build`).
import('../dist/src/cli/main.js').then((m) => m.main(process.argv.slice(2)));
