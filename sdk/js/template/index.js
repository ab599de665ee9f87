// A minimal Courier handler in JavaScript: logs every `order.placed` event and succeeds.
//
// Build it from the repository root:
//
//     node sdk/js/build.mjs sdk/js/template/index.js wit handler-plugin my-handler.wasm
//
// and try it:
//
//     courier test my-handler.wasm --message '{"name":"order.placed","payload":{"id":7}}'
import { config, log } from 'courier:plugin/host@0.1.0';

export const handler = {
  // Called once at load time: no config, no deliveries here.
  describe() {
    return {
      name: 'my-handler',
      version: '0.1.0',
      subscriptions: [{ queue: 'orders', topic: 'order', events: ['placed'] }],
    };
  },

  handle(delivery) {
    const { message, attempt } = delivery;
    let order;
    try {
      order = JSON.parse(new TextDecoder().decode(message.payload));
    } catch (err) {
      // Fatal: retrying cannot fix a malformed payload; it goes to the dead letters.
      return { tag: 'fatal', val: `payload is not JSON: ${err.message}` };
    }

    if (attempt > 10) {
      return { tag: 'fatal', val: 'giving up after 10 attempts' };
    }
    if (config('paused') === 'true') {
      // Retry: the host tries again later (after 60 s here; undefined lets the policy decide).
      return { tag: 'retry', val: { reason: 'paused by the operator', delayMs: 60_000n } };
    }

    log('info', `order ${order.id} placed (${message.id}, attempt ${attempt})`);
    return { tag: 'ok' };
  },
};
