// Builds the player (and the browser test's host page) into single HTML files
// with everything inlined, so the Python package ships a file and needs no Node:
//   gravitex_mcp/server/player/player.html   served as ui://gravitex/player.html
//   tests/assets/player_host.html     the minimal MCP Apps host of the browser test
import { build } from "esbuild";
import { readFile, writeFile, mkdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, "..");

// zod (under the MCP SDK) re-exports every locale it has, ~260 KB the view never
// uses: error messages stay in English, the default zod itself installs.
const englishOnlyZod = {
  name: "english-only-zod",
  setup(b) {
    b.onResolve({ filter: /locales\/index\.js$/ }, (args) =>
      args.importer.includes(`${"node_modules"}/zod/`)
        ? { path: "zod-locales-en", namespace: "english-only-zod" }
        : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: "english-only-zod" }, () => ({
      contents: 'export { default as en } from "zod/v4/locales/en.js";',
      resolveDir: here,
    }));
  },
};

async function bundle(entry) {
  const result = await build({
    entryPoints: [join(here, entry)],
    bundle: true,
    minify: true,
    format: "iife",
    target: "es2020",
    platform: "browser",
    legalComments: "none",
    plugins: [englishOnlyZod],
    write: false,
  });
  return result.outputFiles[0].text;
}

async function page(template, marker, entry, output) {
  const html = await readFile(join(here, template), "utf8");
  // An inline script must not contain "</script": it would end the element.
  const script = (await bundle(entry)).replaceAll("</script", "<\\/script");
  if (!html.includes(marker)) throw new Error(`${template} lacks ${marker}`);
  const out = html.replace(marker, () => `<script>${script}</script>`);
  await mkdir(dirname(join(repo, output)), { recursive: true });
  await writeFile(join(repo, output), out);
  console.log(`${output}: ${out.length} bytes`);
}

await page("src/player.html", "<!--PLAYER_SCRIPT-->", "src/player.js", "gravitex_mcp/server/player/player.html");
await page("host/host.html", "<!--HOST_SCRIPT-->", "host/host.js", "tests/assets/player_host.html");
