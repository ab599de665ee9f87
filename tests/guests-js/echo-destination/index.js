// A test guest: the `destination` world in JavaScript. Like the Rust echo destination, it
// answers each delivery of a batch ok, or, when its payload is `{"describe": true}`, fatal
// with every field of the delivery as it arrived, in the same words: the host compares the
// two, so a field lifted wrongly from a batch shows. (Headers are quoted as Rust's `{:?}`
// quotes them only for names and values without `"` or `\`, as in the test.) A delivery
// whose payload is `{"grow": MB}` is answered ok after the guest allocated that many megabytes
// in pieces of 64 KiB and kept them: the pieces fill the free space of 64 KiB or more, then
// the heap grows, so that an answers' list larger than a piece is allocated past the end of
// the memory the bindings viewed when they lifted the batch.
const decoder = new TextDecoder();

// What `grow` allocated.
const kept = [];

function describe(delivery, payload) {
  const message = delivery.message;
  const headers = message.headers.map(([name, value]) => `("${name}", "${value}")`).join(', ');
  return (
    `id=${message.id} name=${message.name} topic=${message.topic} payload=${JSON.stringify(payload)} ` +
    `published=${message.publishedAt} due=${message.deliverAt} headers=[${headers}] ` +
    `queue=${delivery.queue} attempt=${delivery.attempt}`
  );
}

export const destination = {
  describe() {
    return {
      name: 'echo-destination-js',
      version: '0.1.0',
      subscriptions: [{ queue: 'echo', topic: 'echo', events: ['event'] }],
    };
  },

  deliver(batch) {
    return batch.map((delivery) => {
      const payload = JSON.parse(decoder.decode(delivery.message.payload));
      for (let piece = 0; piece < (payload.grow ?? 0) * 16; piece++) {
        kept.push(new Uint8Array(64 << 10).fill(1));
      }
      return payload.describe === true
        ? { tag: 'fatal', val: describe(delivery, payload) }
        : { tag: 'ok' };
    });
  },
};
