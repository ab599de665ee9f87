// Builds a Courier plugin written in JavaScript into a WebAssembly component.
//
//   node sdk/js/build.mjs SOURCE.js WIT_DIR WORLD OUT.wasm
//
// SOURCE.js is an ES module exporting the world's interface (`export const handler = {...}`
// for the `handler-plugin` world), WIT_DIR the directory holding the contract (`wit/`), WORLD
// `handler-plugin` or `destination-plugin`. It uses componentize-js through its Node API,
// without ahead-of-time compilation, from sdk/js/node_modules (run `sdk/install-toolchains js`).
import { mkdir, stat, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { argv, exit } from 'node:process';

const usage = 'usage: node sdk/js/build.mjs SOURCE.js WIT_DIR WORLD OUT.wasm';

async function main(args) {
  if (args.length !== 4) {
    throw new Error(usage);
  }
  const [source, witDir, world, out] = args.map((arg, i) => (i === 2 ? arg : resolve(arg)));
  await mustExist(source, 'source file');
  await mustExist(witDir, 'WIT directory');

  let componentize;
  try {
    ({ componentize } = await import('@bytecodealliance/componentize-js'));
  } catch (err) {
    throw new Error(
      `componentize-js is not installed (${err.code ?? err.message}): run sdk/install-toolchains js`,
    );
  }

  const { component } = await componentize({
    sourcePath: source,
    witPath: witDir,
    worldName: world,
    // A handler needs no `fetch()` and serves no incoming HTTP requests. Console output
    // (stdio), clocks and randomness stay: the host captures the output as log lines and
    // grants nothing else.
    disableFeatures: ['http', 'fetch-event'],
  });

  await mkdir(dirname(out), { recursive: true });
  await writeFile(out, component);
  console.error(`built ${out} (${component.length} bytes)`);
}

async function mustExist(path, what) {
  try {
    await stat(path);
  } catch {
    throw new Error(`${what} not found: ${path}`);
  }
}

main(argv.slice(2)).catch((err) => {
  console.error(`error: ${err.message}`);
  exit(1);
});
