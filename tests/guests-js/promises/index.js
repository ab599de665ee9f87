// A test guest whose `handle` answers with a value or with a promise of one, as the payload
// asks: `{"answer": "ok" | "retry" | "fatal" | "throw" | "ok-then-fatal", "async": true |
// false}`. `ok-then-fatal` answers ok and queues a promise job that turns that same answer
// into `fatal` ("changed after returning"): the host takes the answer as it was returned.
//
// Asked for `async`, it answers through an async function that waits two turns of the job
// queue and publishes a follow-up event, `promise.settled`, before answering: the host must
// wait for the promise, and host calls made after an `await` must still belong to the
// delivery.
//
// Given `"grow": MB`, it first allocates that many megabytes and keeps them, so that the
// engine's heap, and the memory the bindings view, usually grow between lifting the delivery
// and lowering the answer.
import { publish } from 'courier:plugin/host@0.1.0';

function answer(what) {
  switch (what) {
    case 'ok':
      return { tag: 'ok' };
    case 'retry':
      return { tag: 'retry', val: { reason: 'asked to retry', delayMs: 1500n } };
    case 'fatal':
      return { tag: 'fatal', val: 'asked to fail' };
    case 'ok-then-fatal': {
      const outcome = { tag: 'ok' };
      Promise.resolve().then(() => {
        outcome.tag = 'fatal';
        outcome.val = 'changed after returning';
      });
      return outcome;
    }
    default:
      throw new Error(`asked to throw (${what})`);
  }
}

async function later(what) {
  await null;
  await Promise.resolve();
  publish('promise.settled', new TextEncoder().encode('{}'), {
    id: undefined,
    deliverAt: undefined,
    headers: [],
  });
  return answer(what);
}

// What `grow` allocated.
const kept = [];

export const handler = {
  describe() {
    return {
      name: 'promises-js',
      version: '0.1.0',
      subscriptions: [{ queue: 'promises-js', topic: 'promise', events: ['ask'] }],
    };
  },

  handle(delivery) {
    const ask = JSON.parse(new TextDecoder().decode(delivery.message.payload));
    if (ask.grow) {
      kept.push(new Uint8Array(ask.grow << 20).fill(1));
    }
    return ask.async ? later(ask.answer) : answer(ask.answer);
  },
};
