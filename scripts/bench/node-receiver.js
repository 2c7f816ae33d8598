// The Node.js receiver of RingCentral's "Webhook Basics" tutorial, reduced to its request logic
// (Node's http module, no SDK), for scripts/bench.sh to compare against.
// One deliberate change: the tutorial echoes the notification back in the answer, which breaks
// the platform's 1024-byte answer limit; here it answers 200 with an empty body, like ringhook.
'use strict';
const http = require('http');
const PORT = process.env.PORT || 3000;
const PATH = '/webhook';
const TOKEN = process.env.WEBHOOK_TOKEN;

http
  .createServer((req, res) => {
    if (req.method !== 'POST' || req.url !== PATH) {
      res.statusCode = 403;
      res.end();
      return;
    }
    const validationToken = req.headers['validation-token'];
    if (validationToken) {
      res.setHeader('Validation-Token', validationToken);
      res.setHeader('Content-Type', 'application/json');
      res.statusCode = 200;
      res.end();
      return;
    }
    if (TOKEN && req.headers['verification-token'] !== TOKEN) {
      res.statusCode = 403;
      res.end();
      return;
    }
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString();
      // The tutorial logs with console.log; stdout is redirected to a file by the benchmark.
      console.log(JSON.stringify({ receivedAt: new Date().toISOString(), notification: JSON.parse(body) }));
      res.statusCode = 200;
      res.end();
    });
  })
  .listen(PORT, '127.0.0.1');
