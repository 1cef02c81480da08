// Test helper: one HTTP(S) request, printing the status code on the first line and the body after.
// node https-request.mjs METHOD URL [--ca F] [--cert F --key F] [--token T] [--type CONTENT_TYPE]
//                        [--body-file F | --body TEXT] [--host HOST_HEADER] [--show-header NAME]
// --show-header NAME prints that response header's value (or an empty line) after the status.
// A TLS or connection failure prints "ERROR <code>: <message>" and exits 2.
import http from 'node:http';
import https from 'node:https';
import fs from 'node:fs';

const [method, url, ...rest] = process.argv.slice(2);
const option = (name) => {
  const i = rest.indexOf(name);
  return i >= 0 ? rest[i + 1] : undefined;
};
const headers = {};
if (option('--token')) headers.authorization = `Bearer ${option('--token')}`;
if (option('--type')) headers['content-type'] = option('--type');
if (option('--host')) headers.host = option('--host');
let body;
if (option('--body-file')) body = fs.readFileSync(option('--body-file'));
if (option('--body') !== undefined) body = Buffer.from(option('--body'));
const tls = {};
if (option('--ca')) tls.ca = fs.readFileSync(option('--ca'));
if (option('--cert')) tls.cert = fs.readFileSync(option('--cert'));
if (option('--key')) tls.key = fs.readFileSync(option('--key'));

const client = url.startsWith('https:') ? https : http;
const req = client.request(url, { method, headers, ...tls }, (res) => {
  const chunks = [];
  res.on('data', (d) => chunks.push(d));
  res.on('end', () => {
    const shown = option('--show-header') ? `${res.headers[option('--show-header').toLowerCase()] ?? ''}\n` : '';
    process.stdout.write(`${res.statusCode}\n${shown}${Buffer.concat(chunks).toString('utf8')}\n`);
  });
});
req.on('error', (err) => {
  process.stdout.write(`ERROR ${err.code ?? ''}: ${err.message}\n`);
  process.exitCode = 2;
});
if (body) req.write(body);
req.end();
