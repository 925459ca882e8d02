#!/usr/bin/env node
// The worklist query dcmjs-dimse builds by default, CFindRequest.createWorklistFindRequest(),
// unchanged: its own default keys (among them Query/Retrieve Level (0008,0052), attributes the
// worklist model does not define and empty code sequences), all universal. One association, one
// C-FIND; one JSON line goes to stdout:
//   {"request": {...}, "statuses": [...], "matches": [{...}, ...]}
// "request" is the identifier as sent and each match a response identifier, both as dcmjs
// "naturalized" elements (keyword -> value; sequences are arrays of objects). Transport failures
// (refused connection, rejected association, no final response, timeout) exit non-zero.

import { parseArgs } from 'node:util';

import dcmjsDimse from 'dcmjs-dimse';

const { Client, log } = dcmjsDimse;
const { CFindRequest } = dcmjsDimse.requests;

const PENDING = new Set([0xff00, 0xff01]);
const CONNECT_TIMEOUT = 10_000;
const ASSOCIATION_TIMEOUT = 15_000;
const PDU_TIMEOUT = 15_000;
const OVERALL_TIMEOUT = 60_000;

function usage(message) {
  process.stderr.write(
    `${message}\nusage: node worklist_find.mjs --host H --port P --called AE --calling AE\n`
  );
  process.exit(2);
}

function parseCli() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        host: { type: 'string', default: '127.0.0.1' },
        port: { type: 'string' },
        called: { type: 'string', default: 'MWLBROKER' },
        calling: { type: 'string', default: 'MODALITY1' },
        verbose: { type: 'boolean', default: false },
      },
      strict: true,
    }));
  } catch (err) {
    usage(err.message);
  }
  const port = Number(values.port);
  if (!Number.isInteger(port) || port <= 0 || port > 65535) usage('--port must be a TCP port');
  return { ...values, port };
}

function find(opts, request) {
  return new Promise((resolve, reject) => {
    const statuses = [];
    const matches = [];
    let final = false;
    let settled = false;
    const client = new Client();
    const finish = (err) => {
      if (settled) return;
      settled = true;
      clearTimeout(guard);
      if (err) reject(err);
      else resolve({ statuses, matches });
    };
    const guard = setTimeout(() => {
      try {
        client.abort();
      } catch {
        // not connected: nothing to abort
      }
      finish(new Error(`no final C-FIND response within ${OVERALL_TIMEOUT} ms`));
    }, OVERALL_TIMEOUT);
    request.on('response', (response) => {
      const status = response.getStatus();
      statuses.push(status);
      if (PENDING.has(status)) {
        if (response.hasDataset()) matches.push(response.getDataset().getElements());
      } else {
        final = true;
      }
    });
    client.addRequest(request);
    client.on('associationRejected', (r) => {
      finish(new Error(`association rejected (result ${r.result}, reason ${r.reason})`));
    });
    client.on('networkError', (err) => {
      finish(new Error(`network error: ${err && err.message ? err.message : err}`));
    });
    client.on('closed', () => {
      if (final) finish();
      else finish(new Error('the association closed without a final C-FIND response'));
    });
    client.send(opts.host, opts.port, opts.calling, opts.called, {
      connectTimeout: CONNECT_TIMEOUT,
      associationTimeout: ASSOCIATION_TIMEOUT,
      pduTimeout: PDU_TIMEOUT,
    });
  });
}

async function main() {
  const opts = parseCli();
  // stdout is reserved for the one JSON line; the library logs through console.
  for (const method of ['log', 'info', 'debug', 'trace']) console[method] = console.error;
  log.setLevel(opts.verbose ? 'info' : 'warn');

  const request = CFindRequest.createWorklistFindRequest();
  const sent = request.getDataset().getElements();
  const { statuses, matches } = await find(opts, request);
  process.stdout.write(`${JSON.stringify({ request: sent, statuses, matches })}\n`);
}

main().catch((err) => {
  process.stderr.write(`worklist_find.mjs: ${err.message}\n`);
  process.exit(1);
});
