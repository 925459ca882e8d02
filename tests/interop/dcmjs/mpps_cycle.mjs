#!/usr/bin/env node
// An independent SCU (dcmjs-dimse) running a modality's worklist + MPPS cycle against a broker:
//   1. C-FIND Modality Worklist for one station, take the first pending match;
//   2. N-CREATE an MPPS "IN PROGRESS" that references the found step (PS3.4 Table F.7.2-1);
//   3. N-SET it to the final state (COMPLETED or DISCONTINUED) with a performed series;
//   4. N-SET it again: an SCP must refuse updates of a finished step (0x0110, Error ID 0xA710).
// Every step runs on its own association, as modalities do. One JSON line goes to stdout; the
// library's log goes to stderr. Transport failures (refused connection, rejected association,
// unaccepted presentation context, missing response, timeout) exit non-zero with a message.
//
// --find-only runs step 1 alone (e.g. to show that a finished step has left the worklist).

import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';

import dcmjsDimse from 'dcmjs-dimse';

const { Client, Dataset, log } = dcmjsDimse;
const { CFindRequest, NCreateRequest, NSetRequest } = dcmjsDimse.requests;
const { SopClass, Status } = dcmjsDimse.constants;

const MWL_FIND = '1.2.840.10008.5.1.4.31'; // Modality Worklist Information Model - FIND
const MPPS = '1.2.840.10008.3.1.2.3.3'; // Modality Performed Procedure Step
const CT_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.2';
const PENDING = new Set([0xff00, 0xff01]);

// Network timeouts (ms) handed to dcmjs-dimse, a per-association guard, and an overall guard.
const CONNECT_TIMEOUT = 10_000;
const ASSOCIATION_TIMEOUT = 15_000; // connected, but no A-ASSOCIATE-AC/RJ yet
const PDU_TIMEOUT = 15_000; // no PDU (e.g. no DIMSE response) for this long
const STEP_TIMEOUT = 30_000;
const OVERALL_TIMEOUT = 100_000;

class TransportError extends Error {}

function usage(message) {
  process.stderr.write(
    `${message}\nusage: node mpps_cycle.mjs --host H --port P --called AE --calling AE ` +
      `--station AE --final COMPLETED|DISCONTINUED --mpps-uid UID\n` +
      `       node mpps_cycle.mjs --find-only --host H --port P --called AE --calling AE --station AE\n`
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
        station: { type: 'string' },
        final: { type: 'string', default: 'COMPLETED' },
        'mpps-uid': { type: 'string' },
        'find-only': { type: 'boolean', default: false },
        verbose: { type: 'boolean', default: false },
      },
      strict: true,
    }));
  } catch (err) {
    usage(err.message);
  }
  const port = Number(values.port);
  if (!Number.isInteger(port) || port <= 0 || port > 65535) usage('--port must be a TCP port');
  if (!values.station) usage('--station is required');
  if (!values['find-only']) {
    if (!['COMPLETED', 'DISCONTINUED'].includes(values.final)) {
      usage('--final must be COMPLETED or DISCONTINUED');
    }
    if (!/^[0-9]+(\.[0-9]+)*$/.test(values['mpps-uid'] || '') || values['mpps-uid'].length > 64) {
      usage('--mpps-uid must be a DICOM UID');
    }
  }
  return { ...values, port };
}

// ---------------------------------------------------------------------------------------------
// Helpers

function pad(n, width = 2) {
  return String(n).padStart(width, '0');
}

function dicomNow() {
  const d = new Date();
  return {
    date: `${d.getFullYear()}${pad(d.getMonth() + 1)}${pad(d.getDate())}`,
    time: `${pad(d.getHours())}${pad(d.getMinutes())}${pad(d.getSeconds())}`,
  };
}

// A UID under the 2.25 root (PS3.5 B.2): the decimal form of a random UUID.
function newUid() {
  return `2.25.${BigInt(`0x${randomUUID().replace(/-/g, '')}`).toString()}`;
}

// dcmjs "naturalized" values: single values are scalars, multiple values arrays, PN objects.
function first(value) {
  return Array.isArray(value) ? value[0] : value;
}

function text(value) {
  const v = first(value);
  if (v === undefined || v === null) return '';
  if (typeof v === 'object') return v.Alphabetic ?? '';
  return String(v);
}

function hex(status) {
  return `0x${Number(status).toString(16).padStart(4, '0')}`;
}

// Runs the requests on one association; resolves when it is released and closed. Each request
// must have received its final response by then, or the step counts as a transport failure.
function runAssociation(opts, requests, label) {
  return new Promise((resolve, reject) => {
    const client = new Client();
    const finals = new Map();
    let settled = false;
    const finish = (err) => {
      if (settled) return;
      settled = true;
      clearTimeout(guard);
      if (err) reject(err);
      else resolve(finals);
    };
    const guard = setTimeout(() => {
      try {
        client.abort();
      } catch {
        // not connected: nothing to abort
      }
      finish(new TransportError(`${label}: no result within ${STEP_TIMEOUT} ms`));
    }, STEP_TIMEOUT);

    for (const request of requests) {
      request.on('response', (response) => {
        if (!PENDING.has(response.getStatus())) finals.set(request, response);
      });
      client.addRequest(request);
    }
    client.on('associationAccepted', (association) => {
      const accepted = association
        .getPresentationContexts()
        .map((c) => association.getPresentationContext(c.id))
        .filter((c) => c.getResult() === 0)
        .map((c) => c.getAbstractSyntaxUid());
      const missing = requests
        .map((r) => r.getAffectedSopClassUid?.() || r.getRequestedSopClassUid?.())
        .filter((uid) => uid && !accepted.includes(uid));
      if (missing.length > 0) {
        try {
          client.abort();
        } catch {
          // already gone
        }
        finish(
          new TransportError(
            `${label}: the SCP did not accept a presentation context for ${[...new Set(missing)].join(', ')}`
          )
        );
      }
    });
    client.on('associationRejected', (r) => {
      finish(
        new TransportError(
          `${label}: association rejected (result ${r.result}, source ${r.source}, reason ${r.reason})`
        )
      );
    });
    client.on('networkError', (err) => {
      finish(new TransportError(`${label}: network error: ${err && err.message ? err.message : err}`));
    });
    client.on('closed', () => {
      const unanswered = requests.filter((r) => !finals.has(r));
      if (unanswered.length > 0) {
        finish(new TransportError(`${label}: the association closed without a final response`));
      } else {
        finish();
      }
    });
    try {
      client.send(opts.host, opts.port, opts.calling, opts.called, {
        connectTimeout: CONNECT_TIMEOUT,
        associationTimeout: ASSOCIATION_TIMEOUT,
        pduTimeout: PDU_TIMEOUT,
      });
    } catch (err) {
      finish(new TransportError(`${label}: ${err.message}`));
    }
  });
}

// ---------------------------------------------------------------------------------------------
// 1. C-FIND Modality Worklist

async function findWorklist(opts) {
  const request = new CFindRequest();
  request.setAffectedSopClassUid(MWL_FIND);
  request.setDataset(
    new Dataset({
      PatientName: '',
      PatientID: '',
      PatientBirthDate: '',
      PatientSex: '',
      AccessionNumber: '',
      StudyInstanceUID: '',
      RequestedProcedureID: '',
      RequestedProcedureDescription: '',
      ScheduledProcedureStepSequence: [
        {
          ScheduledStationAETitle: opts.station,
          ScheduledProcedureStepID: '',
          ScheduledProcedureStepDescription: '',
          Modality: '',
          ScheduledProcedureStepStartDate: '',
          ScheduledProcedureStepStartTime: '',
        },
      ],
    })
  );
  const statuses = [];
  const matches = [];
  request.on('response', (response) => {
    const status = response.getStatus();
    statuses.push(status);
    if (PENDING.has(status) && response.hasDataset()) {
      matches.push(response.getDataset().getElements());
    }
  });
  await runAssociation(opts, [request], 'C-FIND');
  return { statuses, matches };
}

// ---------------------------------------------------------------------------------------------
// 2. N-CREATE: PS3.4 Table F.7.2-1, "N-CREATE" column (Type 1 and 2 attributes; 2 may be empty)

function createAttributes(opts, match, ids) {
  const sps = first(match.ScheduledProcedureStepSequence) || {};
  const now = dicomNow();
  return {
    // Performed Procedure Step Relationship
    ScheduledStepAttributesSequence: [
      {
        StudyInstanceUID: text(match.StudyInstanceUID),
        ReferencedStudySequence: [],
        AccessionNumber: text(match.AccessionNumber),
        RequestedProcedureID: text(match.RequestedProcedureID),
        RequestedProcedureDescription: text(match.RequestedProcedureDescription),
        ScheduledProcedureStepID: text(sps.ScheduledProcedureStepID),
        ScheduledProcedureStepDescription: text(sps.ScheduledProcedureStepDescription),
        ScheduledProtocolCodeSequence: [],
      },
    ],
    PatientName: match.PatientName ?? '',
    PatientID: text(match.PatientID),
    PatientBirthDate: text(match.PatientBirthDate),
    PatientSex: text(match.PatientSex),
    ReferencedPatientSequence: [],
    // Performed Procedure Step Information
    PerformedProcedureStepID: ids.ppsId,
    PerformedStationAETitle: opts.calling,
    PerformedStationName: opts.station,
    PerformedLocation: 'INTEROP ROOM 1',
    PerformedProcedureStepStartDate: now.date,
    PerformedProcedureStepStartTime: now.time,
    PerformedProcedureStepStatus: 'IN PROGRESS',
    PerformedProcedureStepDescription: text(sps.ScheduledProcedureStepDescription),
    PerformedProcedureTypeDescription: text(match.RequestedProcedureDescription),
    ProcedureCodeSequence: [],
    PerformedProcedureStepEndDate: '',
    PerformedProcedureStepEndTime: '',
    // Image Acquisition Results
    Modality: text(sps.Modality) || 'CT',
    StudyID: text(match.RequestedProcedureID).slice(0, 16),
    PerformedProtocolCodeSequence: [],
    PerformedSeriesSequence: [],
    PerformedProcedureStepDiscontinuationReasonCodeSequence: [],
  };
}

// ---------------------------------------------------------------------------------------------
// 3. N-SET: the final state, with what was acquired

function finalAttributes(opts, match, ids) {
  const sps = first(match.ScheduledProcedureStepSequence) || {};
  const now = dicomNow();
  const attributes = {
    PerformedProcedureStepStatus: opts.final,
    PerformedProcedureStepEndDate: now.date,
    PerformedProcedureStepEndTime: now.time,
    PerformedSeriesSequence: [
      {
        PerformingPhysicianName: 'INTEROP^PHYSICIAN',
        ProtocolName: text(sps.ScheduledProcedureStepDescription) || 'INTEROP PROTOCOL',
        OperatorsName: 'INTEROP^OPERATOR',
        SeriesInstanceUID: ids.seriesUid,
        SeriesDescription: 'dcmjs-dimse interop series',
        RetrieveAETitle: opts.calling,
        ReferencedImageSequence: [
          {
            ReferencedSOPClassUID: CT_IMAGE_STORAGE,
            ReferencedSOPInstanceUID: ids.imageUid,
          },
        ],
        ReferencedNonImageCompositeSOPInstanceSequence: [],
      },
    ],
  };
  if (opts.final === 'DISCONTINUED') {
    attributes.PerformedProcedureStepDiscontinuationReasonCodeSequence = [
      {
        CodeValue: '110514',
        CodingSchemeDesignator: 'DCM',
        CodeMeaning: 'Incorrect worklist entry selected',
      },
    ];
  }
  return attributes;
}

async function nCreate(opts, attributes) {
  const request = new NCreateRequest(MPPS, opts['mpps-uid']);
  request.setDataset(new Dataset(attributes));
  const finals = await runAssociation(opts, [request], 'N-CREATE');
  return finals.get(request);
}

async function nSet(opts, attributes, label) {
  const request = new NSetRequest(MPPS, opts['mpps-uid']);
  request.setDataset(new Dataset(attributes));
  const finals = await runAssociation(opts, [request], label);
  return finals.get(request);
}

// ---------------------------------------------------------------------------------------------

async function main() {
  const opts = parseCli();

  // dcmjs-dimse logs through loglevel; console.info/log would land on stdout, which is reserved
  // for the one JSON result line.
  for (const method of ['log', 'info', 'debug', 'trace']) console[method] = console.error;
  log.setLevel(opts.verbose ? 'info' : 'warn');

  const found = await findWorklist(opts);
  const match = found.matches[0];
  const sps = match ? first(match.ScheduledProcedureStepSequence) || {} : {};
  const result = {
    find_status: found.statuses,
    matches: found.matches.length,
    study_uid: match ? text(match.StudyInstanceUID) : null,
    sps_id: match ? text(sps.ScheduledProcedureStepID) : null,
    accession: match ? text(match.AccessionNumber) : null,
    create_status: null,
    set_status: null,
    second_set_status: null,
    second_set_error_id: null,
    second_set_error_comment: null,
  };
  if (opts['find-only']) return result;
  if (!match) {
    process.stdout.write(`${JSON.stringify(result)}\n`);
    process.stderr.write(`no pending worklist match for station ${opts.station}\n`);
    process.exit(3);
  }

  const ids = {
    ppsId: `PPS${Date.now().toString(36).toUpperCase()}`.slice(0, 16),
    seriesUid: newUid(),
    imageUid: newUid(),
  };

  const created = await nCreate(opts, createAttributes(opts, match, ids));
  result.create_status = created.getStatus();
  if (result.create_status !== Status.Success) {
    process.stderr.write(
      `N-CREATE failed: ${hex(result.create_status)} ${created.getErrorComment() || ''}\n`
    );
    return result;
  }

  const set = await nSet(opts, finalAttributes(opts, match, ids), 'N-SET (final)');
  result.set_status = set.getStatus();

  const again = await nSet(
    opts,
    { PerformedProcedureStepDescription: 'amended after the final N-SET' },
    'N-SET (after final)'
  );
  result.second_set_status = again.getStatus();
  const command = again.getCommandDataset();
  const errorId = command.getElement('ErrorID');
  const errorComment = command.getElement('ErrorComment');
  result.second_set_error_id = errorId === undefined || errorId === '' ? null : Number(errorId);
  result.second_set_error_comment =
    errorComment === undefined || errorComment === '' ? null : String(errorComment);
  return result;
}

const overall = setTimeout(() => {
  process.stderr.write(`mpps_cycle: gave up after ${OVERALL_TIMEOUT} ms\n`);
  process.exit(4);
}, OVERALL_TIMEOUT);
overall.unref();

main().then(
  (result) => {
    process.stdout.write(`${JSON.stringify(result)}\n`);
    process.exit(0);
  },
  (err) => {
    process.stderr.write(`mpps_cycle: ${err instanceof TransportError ? '' : 'error: '}${err.message}\n`);
    if (!(err instanceof TransportError) && err.stack) process.stderr.write(`${err.stack}\n`);
    process.exit(1);
  }
);
