#!/usr/bin/env node
// C-STORE of the given Part 10 files on one association with dcmjs-dimse; one JSON line goes to
// stdout: {"statuses": [...]} (one final status per file, in order). Transport failures
// (refused connection, rejected association, no response, timeout) exit non-zero.

import { parseArgs } from 'node:util';

import dcmjsDimse from 'dcmjs-dimse';

const { Client } = dcmjsDimse;
const { CStoreRequest } = dcmjsDimse.requests;

const OVERALL_TIMEOUT = 60_000;

const { values, positionals } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string' },
    called: { type: 'string', default: 'MWLBROKER' },
    calling: { type: 'string', default: 'MODALITY1' },
  },
  allowPositionals: true,
  strict: true,
});
const port = Number(values.port);
if (!Number.isInteger(port) || port <= 0 || port > 65535 || positionals.length === 0) {
  process.stderr.write('usage: node store_files.mjs --port P [--host H] [--called AE] FILE...\n');
  process.exit(2);
}

const guard = setTimeout(() => {
  process.stderr.write(`no result within ${OVERALL_TIMEOUT} ms\n`);
  process.exit(1);
}, OVERALL_TIMEOUT);

const client = new Client();
const requests = positionals.map((file) => new CStoreRequest(file));
const statuses = new Map();
for (const request of requests) {
  request.on('response', (response) => statuses.set(request, response.getStatus()));
  client.addRequest(request);
}
client.on('associationRejected', (r) => {
  process.stderr.write(`association rejected: ${JSON.stringify(r)}\n`);
  process.exit(1);
});
client.on('networkError', (err) => {
  process.stderr.write(`network error: ${err && err.message ? err.message : err}\n`);
  process.exit(1);
});
client.on('closed', () => {
  clearTimeout(guard);
  if (statuses.size !== requests.length) {
    process.stderr.write('the association closed before every response\n');
    process.exit(1);
  }
  process.stdout.write(`${JSON.stringify({ statuses: requests.map((r) => statuses.get(r)) })}\n`);
});
client.send(values.host, port, values.calling, values.called);
