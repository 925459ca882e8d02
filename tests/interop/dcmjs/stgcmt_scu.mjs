#!/usr/bin/env node
// An independent Storage Commitment Push Model SCU (dcmjs-dimse) against a broker (PS3.4 J.3):
//   1. with --listen PORT, a DICOM server on that port takes N-EVENT-REPORTs on associations the
//      broker opens (it answers the SCP/SCU Role Selection item as proposed);
//   2. an N-ACTION Request Storage Commitment (Action Type 1, well-known instance) with the
//      Transaction UID and the --ref CLASS:INSTANCE references; the association is kept open
//      --linger ms after the N-ACTION response, taking an N-EVENT-REPORT on it too;
//   3. waits for one N-EVENT-REPORT (on either association) and prints one JSON line:
//      {action_status, reports: [{via: "same"|"new", event_type, transaction_uid,
//       retrieve_ae_title, referenced: [[class, instance]], failed: [[class, instance, reason]],
//       scu_role, scp_role}]}.
// Transport failures and timeouts exit non-zero with a message; the library logs warnings only
// (--verbose: everything).

import { parseArgs } from 'node:util';

import dcmjsDimse from 'dcmjs-dimse';

const { Client, Dataset, Scp, Server, log } = dcmjsDimse;
const { NActionRequest } = dcmjsDimse.requests;
const { NEventReportResponse } = dcmjsDimse.responses;
const { PresentationContextResult, SopClass, Status, TransferSyntax } = dcmjsDimse.constants;

const WELL_KNOWN_INSTANCE = '1.2.840.10008.1.20.1.1';
const REQUEST_STORAGE_COMMITMENT = 1;
const OVERALL_TIMEOUT = 60_000;

function usage(message) {
  process.stderr.write(
    `${message}\nusage: node stgcmt_scu.mjs --port P --tx UID --ref CLASS:INSTANCE [--ref ...] ` +
      `[--host H] [--called AE] [--calling AE] [--listen PORT] [--linger MS]\n`
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
        listen: { type: 'string' },
        linger: { type: 'string', default: '0' },
        tx: { type: 'string' },
        ref: { type: 'string', multiple: true, default: [] },
        verbose: { type: 'boolean', default: false },
      },
      strict: true,
    }));
  } catch (err) {
    usage(err.message);
  }
  const port = Number(values.port);
  if (!Number.isInteger(port) || port <= 0 || port > 65535) usage('--port must be a TCP port');
  if (!values.tx) usage('--tx is required');
  const refs = values.ref.map((r) => {
    const [sopClass, instance] = r.split(':');
    if (!sopClass || !instance) usage(`--ref ${r} is not CLASS:INSTANCE`);
    return [sopClass, instance];
  });
  return { ...values, port, refs, linger: Number(values.linger) };
}

function items(value) {
  if (value === undefined || value === null) return [];
  return Array.isArray(value) ? value : [value];
}

function describe(request, via, roles) {
  const ds = request.getDataset() ? request.getDataset().getElements() : {};
  return {
    via,
    event_type: request.getEventTypeId(),
    transaction_uid: ds.TransactionUID ?? '',
    retrieve_ae_title: ds.RetrieveAETitle ?? '',
    referenced: items(ds.ReferencedSOPSequence).map((i) => [
      i.ReferencedSOPClassUID,
      i.ReferencedSOPInstanceUID,
    ]),
    failed: items(ds.FailedSOPSequence).map((i) => [
      i.ReferencedSOPClassUID,
      i.ReferencedSOPInstanceUID,
      i.FailureReason,
    ]),
    ...roles,
  };
}

function answer(request) {
  const response = NEventReportResponse.fromRequest(request);
  response.setStatus(Status.Success);
  return response;
}

const reports = [];
let onReport = () => {};

function record(report) {
  reports.push(report);
  onReport();
}

// The requester's own listener: accepts Storage Commitment with the roles the broker proposes.
class ReportScp extends Scp {
  associationRequested(association) {
    this.association = association;
    for (const c of association.getPresentationContexts()) {
      const context = association.getPresentationContext(c.id);
      if (context.getAbstractSyntaxUid() === SopClass.StorageCommitmentPushModel) {
        const syntax = context
          .getTransferSyntaxUids()
          .find((t) => t === TransferSyntax.ImplicitVRLittleEndian || t === TransferSyntax.ExplicitVRLittleEndian);
        if (syntax) context.setResult(PresentationContextResult.Accept, syntax);
        else context.setResult(PresentationContextResult.RejectTransferSyntaxesNotSupported);
      } else {
        context.setResult(PresentationContextResult.RejectAbstractSyntaxNotSupported);
      }
    }
    this.sendAssociationAccept();
  }

  nEventReportRequest(request, callback) {
    const context = this.association
      .getPresentationContexts()
      .map((c) => this.association.getPresentationContext(c.id))
      .find((c) => c.getAbstractSyntaxUid() === SopClass.StorageCommitmentPushModel);
    record(
      describe(request, 'new', {
        scu_role: context ? context.getUserRole() ?? null : null,
        scp_role: context ? context.getProviderRole() ?? null : null,
      })
    );
    callback(answer(request));
  }

  associationReleaseRequested() {
    this.sendAssociationReleaseResponse();
  }
}

function listen(port) {
  return new Promise((resolve, reject) => {
    const server = new Server(ReportScp);
    server.on('listening', () => resolve(server));
    server.on('networkError', (err) => reject(err));
    server.listen(port);
  });
}

function requestCommitment(opts) {
  return new Promise((resolve, reject) => {
    const request = new NActionRequest(
      SopClass.StorageCommitmentPushModel,
      WELL_KNOWN_INSTANCE,
      REQUEST_STORAGE_COMMITMENT
    );
    request.setDataset(
      new Dataset({
        TransactionUID: opts.tx,
        ReferencedSOPSequence: opts.refs.map(([sopClass, instance]) => ({
          ReferencedSOPClassUID: sopClass,
          ReferencedSOPInstanceUID: instance,
        })),
      })
    );
    let status;
    request.on('response', (response) => {
      status = response.getStatus();
    });
    const client = new Client();
    client.addRequest(request);
    client.on('nEventReportRequest', (req, callback) => {
      record(describe(req, 'same', {}));
      callback(answer(req));
    });
    client.on('associationRejected', (r) => reject(new Error(`association rejected: ${r.reason}`)));
    client.on('networkError', (err) => reject(new Error(`network error: ${err.message ?? err}`)));
    client.on('closed', () => {
      if (status === undefined) reject(new Error('no N-ACTION response'));
      else resolve(status);
    });
    client.send(opts.host, opts.port, opts.calling, opts.called, {
      associationLingerTimeout: opts.linger,
      connectTimeout: 10_000,
      associationTimeout: 15_000,
      pduTimeout: 15_000,
    });
  });
}

async function main() {
  const opts = parseCli();
  log.setLevel(opts.verbose ? 'info' : 'warn');
  const guard = setTimeout(() => {
    process.stderr.write(`no N-EVENT-REPORT within ${OVERALL_TIMEOUT} ms\n`);
    process.exit(1);
  }, OVERALL_TIMEOUT);
  const server = opts.listen ? await listen(Number(opts.listen)) : undefined;
  const reported = new Promise((resolve) => {
    onReport = resolve;
  });
  const actionStatus = await requestCommitment(opts);
  if (actionStatus === Status.Success) await (reports.length > 0 ? Promise.resolve() : reported);
  clearTimeout(guard);
  process.stdout.write(`${JSON.stringify({ action_status: actionStatus, reports })}\n`);
  if (server) server.close();
  process.exit(0);
}

main().catch((err) => {
  process.stderr.write(`${err.message}\n`);
  process.exit(1);
});
