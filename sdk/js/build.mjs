// Builds a Courier plugin written in JavaScript into a WebAssembly component.
//
//   node sdk/js/build.mjs SOURCE.js WIT_DIR WORLD OUT.wasm
//
// SOURCE.js is an ES module exporting the world's interface (`export const handler = {...}`
// for the `handler-plugin` world), WIT_DIR the directory holding the contract (`wit/`), WORLD
// `handler-plugin` or `destination-plugin`. It uses componentize-js through its Node API,
// without ahead-of-time compilation, from sdk/js/node_modules (run `sdk/install-toolchains js`),
// and trims the bindings it generates around each call (see `awaitOnlyPromises` and
// `withoutDebugLogging`).
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
  const bindings = await rewriteBindingsWith((code, exports) =>
    withoutDebugLogging(awaitOnlyPromises(code, exports)),
  );

  const { component } = await componentize({
    sourcePath: source,
    witPath: witDir,
    worldName: world,
    // A handler needs no `fetch()` and serves no incoming HTTP requests. Console output
    // (stdio), clocks and randomness stay: the host captures the output as log lines and
    // grants nothing else.
    disableFeatures: ['http', 'fetch-event'],
  });

  if (bindings.rewritten === 0) {
    throw new Error(
      'componentize-js did not generate its bindings through the splicer build.mjs expects: ' +
        'update build.mjs for this componentize-js version',
    );
  }

  await mkdir(dirname(out), { recursive: true });
  await writeFile(out, component);
  console.error(`built ${out} (${component.length} bytes)`);
}

// componentize-js generates the JavaScript that lifts each export's arguments, calls the
// module and lowers its answer, from the WIT world, with its splicer. This wraps the splicer
// (one module instance, shared with componentize-js) so that `rewrite` edits that code before
// it is snapshotted into the component. Returns a record of how many bindings it rewrote.
async function rewriteBindingsWith(rewrite) {
  // Where `import()` found componentize-js (Node 20.6 and later say so; before that the
  // package is where `npm ci` put it, next to this file).
  const componentizeUrl = import.meta.resolve
    ? import.meta.resolve('@bytecodealliance/componentize-js')
    : new URL(
        'node_modules/@bytecodealliance/componentize-js/src/componentize.js',
        import.meta.url,
      );
  const splicerUrl = new URL('../lib/spidermonkey-embedding-splicer.js', componentizeUrl);
  const { splicer } = await import(splicerUrl);
  const record = { rewritten: 0 };
  const splice = splicer.spliceBindings;
  splicer.spliceBindings = (...args) => {
    const spliced = splice(...args);
    const jsBindings = rewrite(spliced.jsBindings, spliced.exports.length);
    record.rewritten += 1;
    return { ...spliced, jsBindings };
  };
  return record;
}

// Every export componentize-js generates is an async function that awaits what the module
// returned, even a plain object: a promise job and a resumption per call (a reused-instance
// call of the no-op handler took 22 µs with it, 18 µs without). The contract's functions are
// synchronous, so a handler answers with a value unless it returns a promise (`async
// handle`): the bindings await only a thenable, and lower any other answer at once, before
// the jobs the handler queued run (they still run within the call). An exception thrown by
// the handler and a rejected promise still reject the export's promise, as before.
function awaitOnlyPromises(bindings, exports) {
  let calls = 0;
  const rewritten = bindings.replace(
    /^( *)ret = await (\w+)\(([^;]*)\);$/gm,
    (_, indent, callee, args) => {
      calls += 1;
      return (
        `${indent}ret = ${callee}(${args});\n` +
        `${indent}if (ret !== null && (typeof ret === 'object' || typeof ret === 'function') && ` +
        `typeof ret.then === 'function') ret = await ret;`
      );
    },
  );
  if (calls !== exports) {
    throw new Error(
      `expected one awaited call per export in componentize-js's bindings, found ${calls} ` +
        `for ${exports} exports: update build.mjs for this componentize-js version`,
    );
  }
  return rewritten;
}

// The bindings log every step of every call and host call through `_debugLog`, which does
// nothing unless `process.env.JCO_DEBUG` is set, and the engine has no `process`: yet each
// call still builds the object it would have logged (18 µs with them, 16 µs without). The
// calls go, each replaced by an empty statement; the few with arguments of another shape
// (error paths) stay, harmless.
function withoutDebugLogging(bindings) {
  return bindings.replace(/_debugLog\('[^'\n]*'(?:, \{[^{}()]*\})?\);/g, ';');
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
