// noop-js: answers ok at once, without reading anything.
//
// The JavaScript twin of the Rust `noop` plugin, for measuring what a delivery to a
// JavaScript component costs the host (`courier bench --plugin plugins/noop-js.wasm`).
export const handler = {
  describe() {
    return {
      name: 'noop-js',
      version: '0.1.0',
      subscriptions: [{ queue: 'bench', topic: 'bench', events: ['noop'] }],
    };
  },

  handle(_delivery) {
    return { tag: 'ok' };
  },
};
