// The Express receiver of the seed blog post ("Working with RingCentral Webhooks", 2020), as
// published but for the port, for scripts/bench.sh to compare against. Its handshake answer has
// no Content-Type: application/json, and it goes on to call res.send() after res.end().
const express = require('express');
const bodyParser = require('body-parser');
const cors = require('cors');
const helmet = require('helmet');
const morgan = require('morgan');

const app = express();
app.use(helmet());
app.use(bodyParser.json());
app.use(cors());
app.use(morgan('combined'));

app.listen(process.env.PORT || 8081, '127.0.0.1', () => {
  console.log('listening on port ' + (process.env.PORT || 8081));
});

app.post('/webhook', (req, res) => {
  let vt = req.headers['validation-token'];
  if (vt) {
    res.set('Validation-Token', vt);
    res.end();
  }
  console.log(JSON.stringify(req.body, null, '\t'));
  res.send('ok');
});
