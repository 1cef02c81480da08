// Test helper: an HTTPS alert webhook that appends each POSTed body as one line to a file.
// node webhook-receiver.mjs CERT KEY OUT_FILE   -> prints {"ready":true,"url":"https://localhost:PORT/hook"}
import https from 'node:https';
import fs from 'node:fs';

const [cert, key, out] = process.argv.slice(2);
const server = https.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) }, (req, res) => {
  const chunks = [];
  req.on('data', (d) => chunks.push(d));
  req.on('end', () => {
    fs.appendFileSync(out, Buffer.concat(chunks).toString('utf8').replace(/\n/g, ' ') + '\n');
    res.writeHead(204).end();
  });
});
server.listen(0, '127.0.0.1', () => {
  console.log(JSON.stringify({ ready: true, url: `https://localhost:${server.address().port}/hook` }));
});
