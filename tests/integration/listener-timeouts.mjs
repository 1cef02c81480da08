// Test helper: the listener's short pre-request timeout is separate from the body's. Opens two
// connections to a plain-HTTP listener: one that sends nothing, and one whose request header is
// complete (and passes the screen) but whose body arrives a byte a second. Prints one JSON line:
//   {"idle_closed":true,"slow_body_open_then":true,"idle_closed_after_ms":N}
// node listener-timeouts.mjs URL PATH
import net from 'node:net';

const url = new URL(process.argv[2]);
const path = process.argv[3];
const connect = () => net.connect({ host: url.hostname, port: Number(url.port) });

const idle = connect();
const started = Date.now();
const slowBody = connect();
let slowOpen = true;
slowBody.on('connect', () => {
  slowBody.write(`POST ${path} HTTP/1.1\r\nHost: ${url.host}\r\nContent-Type: application/json\r\nContent-Length: 600\r\n\r\n`);
});
const trickle = setInterval(() => slowBody.write(' '), 1000);
slowBody.on('error', () => {});
slowBody.on('close', () => { slowOpen = false; });
idle.on('error', () => {});
idle.on('close', () => {
  const result = { idle_closed: true, slow_body_open_then: slowOpen, idle_closed_after_ms: Date.now() - started };
  clearInterval(trickle);
  slowBody.destroy();
  console.log(JSON.stringify(result));
});
