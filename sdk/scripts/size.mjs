// Bundles and minifies dist/sessiond.js with esbuild (for measuring only; what is served
// is dist/ as tsc wrote it), gzips it, prints the size, and fails above the 10 KB budget.
import { build } from "esbuild";
import { gzipSync } from "node:zlib";

const LIMIT = 10 * 1024;
const root = new URL("..", import.meta.url).pathname;
const out = await build({ entryPoints: [root + "dist/sessiond.js"], bundle: true, minify: true, format: "esm", write: false });
const min = out.outputFiles[0].contents;
const gz = gzipSync(min, { level: 9 }).length;
console.log(`sessiond.js: ${min.length} bytes minified, ${gz} bytes minified+gzipped (limit ${LIMIT})`);
if (gz > LIMIT) {
  console.error("SDK over its 10 KB size budget");
  process.exit(1);
}
