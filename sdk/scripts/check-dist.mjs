// Rebuilds the SDK (tsc, then the single-file bundle) into a temporary directory and fails if the result differs from the
// committed sdk/dist (the server embeds sdk/dist at compile time, so it must be current).
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bundle } from "./bundle.mjs";

const root = new URL("..", import.meta.url).pathname;
const tmp = mkdtempSync(join(tmpdir(), "sessiond-dist-"));
try {
  execFileSync(process.execPath, [join(root, "node_modules/typescript/bin/tsc"), "-p", join(root, "tsconfig.json"), "--outDir", tmp], { stdio: "inherit" });
  bundle(tmp);
  const want = readdirSync(tmp).sort();
  const have = readdirSync(join(root, "dist")).sort();
  const bad = [...new Set([...want, ...have])].filter(
    (f) => !want.includes(f) || !have.includes(f) || !readFileSync(join(tmp, f)).equals(readFileSync(join(root, "dist", f))),
  );
  if (bad.length) {
    console.error(`sdk/dist is stale (${bad.join(", ")}): run \`npm run build\` in sdk/ and commit sdk/dist.`);
    process.exit(1);
  }
  console.log(`sdk/dist is up to date (${have.length} files)`);
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
