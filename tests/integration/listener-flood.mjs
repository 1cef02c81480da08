// Test helper: floods a listener with unauthenticated connections and, while the flood holds,
// has an authenticated client ask for something. Prints one JSON line:
//   {"connected":N,"closed_by_server":M,"answers":[202,202,...],"open_at_end":K}
//
// node listener-flood.mjs URL --per-address N --addresses K [--slow] [--ca F --cert F --key F]
//      [--token T] [--method POST --type T --body-file F] [--requests R]
//
// The flood: K source addresses (127.0.0.1 ... 127.0.0.K, all loopback on Linux) times N
// connections each. A connection either sends nothing at all (no TLS ClientHello either) or, with
// --slow, one byte of a request header a second, like a slowloris client. Whatever the server
// closes is opened again a second later, as an attacker would. The authenticated client comes from
// 127.0.0.1 like the flood's first address, so a cap per address alone would lock it out too.
import fs from 'node:fs';
import https from 'node:https';
import http from 'node:http';
import net from 'node:net';

const args = process.argv.slice(2);
const url = new URL(args[0]);
const opt = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i < 0 ? fallback : args[i + 1];
};
const perAddress = Number(opt('per-address', 60));
const addresses = Number(opt('addresses', 10));
const slow = args.includes('--slow');
const requests = Number(opt('requests', 5));
const port = Number(url.port);
const tls = url.protocol === 'https:';

let connected = 0;
let closedByServer = 0;
let stopping = false;
const sockets = new Set();

function floodOne(localAddress) {
  if (stopping) return;
  const socket = net.connect({ host: url.hostname, port, localAddress });
  sockets.add(socket);
  let timer = null;
  socket.on('connect', () => {
    connected++;
    if (!slow) return;
    const header = `GET /healthz HTTP/1.1\r\nHost: ${url.host}\r\nX-Slow: ${'a'.repeat(200)}\r\n`;
    let sent = 0;
    timer = setInterval(() => socket.write(header[sent++ % header.length]), 1000);
  });
  socket.on('error', () => {});
  socket.on('close', () => {
    clearInterval(timer);
    sockets.delete(socket);
    if (stopping) return;
    closedByServer++;
    setTimeout(() => floodOne(localAddress), 1000);
  });
}

function ask() {
  return new Promise((resolve) => {
    const body = opt('body-file') ? fs.readFileSync(opt('body-file')) : null;
    const headers = {};
    if (opt('token')) headers.authorization = `Bearer ${opt('token')}`;
    if (body) {
      headers['content-type'] = opt('type', 'application/x-ndjson');
      headers['content-length'] = body.length;
    }
    const options = { method: opt('method', 'GET'), headers, agent: false, localAddress: '127.0.0.1' };
    if (tls) {
      options.ca = fs.readFileSync(opt('ca'));
      if (opt('cert')) options.cert = fs.readFileSync(opt('cert'));
      if (opt('key')) options.key = fs.readFileSync(opt('key'));
    }
    const req = (tls ? https : http).request(url, options, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('error', (e) => resolve(`ERROR ${e.code || e.message}`));
    if (body) req.write(body);
    req.end();
  });
}

for (let a = 1; a <= addresses; a++) {
  for (let i = 0; i < perAddress; i++) floodOne(`127.0.0.${a}`);
}
// The flood is in place once every connection has been accepted at least once.
while (connected < perAddress * addresses) await new Promise((r) => setTimeout(r, 50));
await new Promise((r) => setTimeout(r, 500));

const answers = [];
for (let i = 0; i < requests; i++) answers.push(await ask());
const openAtEnd = sockets.size;
stopping = true;
for (const s of sockets) s.destroy();
console.log(JSON.stringify({ connected, closed_by_server: closedByServer, answers, open_at_end: openAtEnd }));
