// Builds a Courier plugin written in JavaScript into a WebAssembly component.
//
//   node sdk/js/build.mjs SOURCE.js WIT_DIR WORLD OUT.wasm
//
// SOURCE.js is an ES module exporting the world's interface (`export const handler = {...}`
// for the `handler-plugin` world), WIT_DIR the directory holding the contract (`wit/`), WORLD
// `handler-plugin` or `destination-plugin`. It uses componentize-js through its Node API,
// without ahead-of-time compilation, from sdk/js/node_modules (run `sdk/install-toolchains js`),
// and trims the bindings it generates around each call (see `synchronousExports`,
// `liftFromOneBuffer`, `tagsThroughBytes`, `withoutDebugLogging` and `nativeUtf8Encoding`).
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
    nativeUtf8Encoding(withoutDebugLogging(synchronousExports(code, exports))),
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

// Every export componentize-js generates is an `async function` that awaits what the module
// returned, even a plain object, and the engine calls it, adds reactions to the promise it
// returns and runs the event loop until that promise settles. The contract's functions are
// synchronous, so most answers are plain values, and for them the async function is pure
// cost: a reused-instance call of the no-op handler took 22 µs as generated, 17.7 µs when it
// awaited only a promise, 14.7 µs as a plain function. Each export becomes a plain function
// that:
// - lowers a plain answer at once (before any job the handler queued runs; those jobs still
//   run within the call) and returns one promise settled when the bindings were loaded, which
//   the engine's reactions and event loop turn see as already fulfilled;
// - for a thenable answer (an `async handle`), returns an async function's promise that
//   awaits it and lowers what it resolves to, as the generated export did;
// - turns an exception (the handler's, or one lifting or lowering throws) into a rejected
//   promise, as the async function did: the engine then logs it with its whole stack.
// The generated lowering must end the function with `return;` and return nothing else: an
// export whose lowering returns a value (a scalar result) is refused rather than rewritten.
function synchronousExports(bindings, exports) {
  let rewritten = 0;
  const refused = [];
  const result = bindings.replace(
    /^async function (export_[\w$]+)\(([^)]*)\) \{\n([\s\S]*?)^( *)ret = await ([\w$]+)\(([^;]*)\);\n([\s\S]*?)^\}$/gm,
    (generated, name, params, before, indent, callee, args, after) => {
      const returns = after.match(/\breturn\b[^;]*;/g) ?? [];
      if (returns.some((statement) => statement !== 'return;') || !/\breturn;\s*$/.test(after)) {
        refused.push(name);
        return generated;
      }
      rewritten += 1;
      after = tagsThroughBytes(after);
      const settled = after.replace(/\breturn;/g, `return ${SETTLED};`);
      return (
        `function ${name}(${params}) {\n  try {\n${liftFromOneBuffer(before)}` +
        `${indent}ret = ${callee}(${args});\n` +
        `${indent}if (ret !== null && (typeof ret === 'object' || typeof ret === 'function') && ` +
        `typeof ret.then === 'function') return (async () => {\n` +
        `${indent}ret = await ret;\n${after}${indent}})();\n` +
        `${settled}` +
        `  } catch (error) {\n    return Promise.reject(error);\n  }\n}`
      );
    },
  );
  if (rewritten !== exports) {
    const detail = refused.length > 0 ? ` (${refused.join(', ')} return a value)` : '';
    throw new Error(
      `expected one async function awaiting the module and returning nothing per export in ` +
        `componentize-js's bindings, found ${rewritten} for ${exports} exports${detail}: ` +
        `update build.mjs for this componentize-js version`,
    );
  }
  return `const ${SETTLED} = Promise.resolve();\n${BYTES_PRELUDE}${result}`;
}

// The generated lifting reads `$memory.buffer`, a native getter, once per string and list it
// lifts, and `dataView($memory)` twice more per number it reads from a list (a destination's
// batch). The arguments were all written before the call began, so one buffer read at the
// start, and one view of it made at the first number read, reach every one of them (the
// memory may grow while lifting allocates, never shrink or move).
function liftFromOneBuffer(lifting) {
  if (!lifting.includes('$memory.buffer') && !lifting.includes('dataView($memory)')) {
    return lifting;
  }
  // Only for lifting that reads what the host wrote: no allocation, no write, no code that
  // runs later, and no names of its own that these would shadow.
  if (/\$realloc|\bawait\b|=>|\bfunction\b|\.set\w*\(|\$buffer\b|\$view\b/.test(lifting)) {
    throw new Error(
      "componentize-js's generated lifting allocates, writes or defers (or already names " +
        '`$buffer` or `$view`): update build.mjs for this componentize-js version',
    );
  }
  let lifted = lifting
    .replaceAll('$memory.buffer', '$buffer')
    .replaceAll('dataView($memory)', '($view ??= new DataView($buffer))');
  // A `list<u8>` (a payload) is copied out by `ArrayBuffer.slice` and wrapped in a new
  // `Uint8Array`: two native calls, where slicing one byte view of the memory, kept across
  // calls, is one.
  const bytesLists = /new Uint8Array\(\$buffer\.slice\(([\w$]+), \1 \+ ([\w$]+) \* 1\)\)/g;
  const sliced = lifted.replace(bytesLists, `${BYTES}.slice($1, $1 + $2)`);
  if (sliced !== lifted) {
    lifted =
      `  if (${BYTES_OF} !== $buffer) { ${BYTES_OF} = $buffer; ${BYTES} = new Uint8Array($buffer); }\n` +
      sliced;
  }
  return `  const $buffer = $memory.buffer;\n  let $view;\n${lifted}`;
}

// Lowering an answer writes each variant's tag through `dataView($memory)`, a function that
// reads the memory's buffer and the view's (two native getters) before the write itself. The
// tag goes through the byte view the lifting keeps instead, written and read back. The
// engine's `$memory.buffer` is an `ArrayBuffer` over its memory from address 0 to the end of
// its heap, made anew when the heap's end has moved and never detached (`GetMemBuffer` in
// componentize-js's release embedding), so an older view still reaches the bytes it covers;
// one too short for the address ignores the write and reads back `undefined`, and is made
// again. A write that still does not land throws, as `setInt8` would have: the call fails
// rather than answer with whatever byte was there.
function tagsThroughBytes(lowering) {
  return lowering.replace(
    /dataView\(\$memory\)\.setInt8\(([^,()]+), (\d{1,2}), true\);/g,
    `${STORE_BYTE}($1, $2);`,
  );
}

// The byte view of the guest's memory the bindings keep across calls (see `liftFromOneBuffer`
// and `tagsThroughBytes`), the buffer it views, and the function that writes a tag through it.
const BYTES = '$courierBytes';
const BYTES_OF = '$courierBytesOf';
const STORE_BYTE = '$courierStoreByte';
const BYTES_PRELUDE = `let ${BYTES_OF} = null;
let ${BYTES} = new Uint8Array(0);
function ${STORE_BYTE}(ptr, value) {
  ${BYTES}[ptr] = value;
  if (${BYTES}[ptr] !== value) {
    ${BYTES_OF} = $memory.buffer;
    ${BYTES} = new Uint8Array(${BYTES_OF});
    ${BYTES}[ptr] = value;
    if (${BYTES}[ptr] !== value) {
      throw new RangeError('cannot write an answer at address ' + ptr + ': outside memory');
    }
  }
}
`;

// The promise every synchronously answered call returns (see `synchronousExports`).
const SETTLED = '$courierSettled';

// The bindings log every step of every call and host call through `_debugLog`, which does
// nothing unless `process.env.JCO_DEBUG` is set, and the engine has no `process`: yet each
// call still builds the object it would have logged (18 µs with them, 16 µs without). The
// calls go, each replaced by an empty statement; the few with arguments of another shape
// (error paths) stay, harmless.
function withoutDebugLogging(bindings) {
  return bindings.replace(/_debugLog\('[^'\n]*'(?:, \{[^{}()]*\})?\);/g, ';');
}

// componentize-js lowers every string the guest hands to the host (a host call's arguments,
// an export's answer) through `_utf8AllocateAndEncode`, which first measures the string's UTF-8
// length in a JavaScript loop, one `charCodeAt` call per character. In an engine without a JIT
// that loop is most of what a host call costs: a welcome-email-js call on a reused instance
// (a config read, a log line and a follow-up event) took 63–105 µs with it, 43–46 µs without.
// The replacement encodes with the engine's native `TextEncoder`, allocates exactly that many
// bytes and copies them in: the same bytes (a lone surrogate becomes U+FFFD either way) in a
// linear-memory allocation of the same size. (The encoded copy also lives in the engine's
// heap until it is collected: a string costs twice its size for a while.) The build stops
// unless the generated helper has the shape this replaces (it allocates with `realloc(0, 0,
// 1, len)` and encodes with `TEXT_ENCODER_UTF8.encodeInto`) and, once it is replaced,
// nothing reads the code point count it also returned.
function nativeUtf8Encoding(bindings) {
  const generated =
    /^function _utf8AllocateAndEncode\(s, realloc, memory\) \{\n[\s\S]*?^\}$/m;
  const helper = bindings.match(generated)?.[0] ?? '';
  const expected =
    /^const TEXT_ENCODER_UTF8 = new TextEncoder\(\);$/m.test(bindings) &&
    helper.includes('realloc(0, 0, 1, len)') &&
    helper.includes('TEXT_ENCODER_UTF8.encodeInto(');
  const result = bindings.replace(
    generated,
    `function _utf8AllocateAndEncode(s, realloc, memory) {
  if (typeof s !== 'string') {
    throw new TypeError('expected a string, received [' + typeof s + ']');
  }
  if (s.length === 0) { return { ptr: 1, len: 0 }; }
  const bytes = TEXT_ENCODER_UTF8.encode(s);
  const len = bytes.length;
  const ptr = realloc(0, 0, 1, len);
  new Uint8Array(memory.buffer, ptr, len).set(bytes);
  return { ptr, len };
}`,
  );
  if (!expected || /\bcodepoints\b/.test(result)) {
    throw new Error(
      "componentize-js's bindings do not lower strings through `_utf8AllocateAndEncode` as " +
        'build.mjs expects, or read the code point count it returns: update build.mjs for ' +
        'this componentize-js version',
    );
  }
  return result;
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
