// The single-file ESM build: bundles <dir>/sessiond.js (tsc's output) and its imports into
// <dir>/sessiond.bundle.js, unminified (an app's bundler minifies; a page importing it
// straight from /sdk/ still reads a whole file it can debug). Usage: bundle.mjs [dir].
import { buildSync } from "esbuild";
import { resolve } from "node:path";

export function bundle(dir) {
  buildSync({
    // Paths in the output's comments are relative to this, so a rebuild elsewhere
    // (check-dist's temporary directory) gives the same bytes.
    absWorkingDir: dir,
    entryPoints: ["sessiond.js"],
    outfile: "sessiond.bundle.js",
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2020",
    legalComments: "none",
    logLevel: "warning",
  });
}

if (import.meta.url === `file://${process.argv[1]}`) bundle(resolve(process.argv[2] ?? new URL("../dist", import.meta.url).pathname));
