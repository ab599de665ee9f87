// A test guest that tries to escape the sandbox and reports what happened.
//
// On each delivery it looks for a preopened directory to read a file from, reads the
// environment, and opens a TCP connection to a loopback port given in the payload as `port`
// (9 when absent). It logs one line per attempt (`file: ...`, `env: ...`, `socket: ...`,
// with `denied` or `ALLOWED`) and returns ok.
import { log } from 'courier:plugin/host@0.1.0';
import { getDirectories } from 'wasi:filesystem/preopens@0.2.12';
import { getEnvironment } from 'wasi:cli/environment@0.2.12';
import { instanceNetwork } from 'wasi:sockets/instance-network@0.2.12';
import { createTcpSocket } from 'wasi:sockets/tcp-create-socket@0.2.12';

function report(what, allowed, detail) {
  log('info', `${what}: ${allowed ? 'ALLOWED' : 'denied'}: ${detail}`);
}

function describeError(err) {
  // A WASI `result` error is thrown with the error code in `payload`.
  return err && err.payload !== undefined ? `error code ${JSON.stringify(err.payload)}` : String(err);
}

function tryFile() {
  let dirs;
  try {
    dirs = getDirectories();
  } catch (err) {
    report('file', false, describeError(err));
    return;
  }
  if (dirs.length === 0) {
    report('file', false, 'no preopened directories');
    return;
  }
  const [descriptor, path] = dirs[0];
  try {
    const file = descriptor.openAt({}, 'etc/passwd', {}, { read: true });
    const [bytes] = file.read(4096n, 0n);
    report('file', true, `read ${bytes.length} bytes of etc/passwd under ${path}`);
  } catch (err) {
    report('file', true, `${dirs.length} preopened directories (${path}); open failed: ${describeError(err)}`);
  }
}

function tryEnv() {
  const vars = getEnvironment();
  if (vars.length === 0) {
    report('env', false, 'no variables');
  } else {
    report('env', true, `${vars.length} variables: ${vars.map(([name]) => name).join(', ')}`);
  }
}

function trySocket(port) {
  let socket;
  try {
    socket = createTcpSocket('ipv4');
  } catch (err) {
    report('socket', false, `create: ${describeError(err)}`);
    return;
  }
  try {
    const address = { tag: 'ipv4', val: { port, address: [127, 0, 0, 1] } };
    socket.startConnect(instanceNetwork(), address);
    const pollable = socket.subscribe();
    pollable.block();
    socket.finishConnect();
    report('socket', true, `connected to 127.0.0.1:${port}`);
  } catch (err) {
    report('socket', false, `connect: ${describeError(err)}`);
  }
}

export const handler = {
  describe() {
    return {
      name: 'sandbox-js',
      version: '0.1.0',
      subscriptions: [{ queue: 'sandbox-js', topic: 'sandbox', events: ['probe'] }],
    };
  },

  handle(delivery) {
    const payload = JSON.parse(new TextDecoder().decode(delivery.message.payload));
    const port = typeof payload?.port === 'number' ? payload.port : 9;
    tryFile();
    tryEnv();
    trySocket(port);
    return { tag: 'ok' };
  },
};
