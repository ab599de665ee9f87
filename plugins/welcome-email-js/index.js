// welcome-email-js: sends a welcome email when a user is created.
//
// The JavaScript twin of the Rust `welcome-email` plugin, with the same contract: it serves
// queue `emails` for `user.created`, reads the sender from config `from`, fails for good on a
// payload without an `email` field, and on success publishes a follow-up `email.sent`.
import { config, log, publish } from 'courier:plugin/host@0.1.0';

const DEFAULT_FROM = 'no-reply@example.com';

export const handler = {
  describe() {
    return {
      name: 'welcome-email-js',
      version: '0.1.0',
      subscriptions: [{ queue: 'emails', topic: 'user', events: ['created'] }],
    };
  },

  handle(delivery) {
    const message = delivery.message;
    let payload;
    try {
      payload = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(message.payload));
    } catch (err) {
      return { tag: 'fatal', val: `payload is not JSON: ${err.message}` };
    }
    const email = payload !== null && typeof payload === 'object' && !Array.isArray(payload)
      ? payload.email
      : undefined;
    if (typeof email !== 'string') {
      return { tag: 'fatal', val: 'payload has no `email` field' };
    }

    const from = config('from') ?? DEFAULT_FROM;
    log('info', `sending welcome email to ${email} from ${from}`);

    const followUp = { to: email, from, user_message_id: message.id };
    try {
      publish('email.sent', new TextEncoder().encode(JSON.stringify(followUp)), {
        id: undefined,
        deliverAt: undefined,
        headers: [],
      });
    } catch (err) {
      // The host refused the event (a `result` error is thrown, its text in `payload`):
      // retrying would not change its mind.
      return { tag: 'fatal', val: `cannot publish email.sent: ${err.payload ?? err.message}` };
    }
    return { tag: 'ok' };
  },
};
