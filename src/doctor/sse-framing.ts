/**
 * A line-level audit of an event stream's bytes: the framing details that the SSE spec allows but real clients trip
 * on. The event parser (src/sse/parser.ts) hides them on purpose; the doctor must see them. Pure; no I/O.
 */

export interface FramingAudit {
  bom: boolean;
  lineEndings: { lf: number; crlf: number; cr: number };
  /** Lines per field name: data, event, id, retry, comment, other. */
  fields: { data: number; event: number; id: number; retry: number; comment: number; other: number };
  /** Event names seen, with counts. */
  eventNames: Record<string, number>;
  /** A comment line came after an `id:` line (openai-python crashes on it). */
  commentAfterId: boolean;
  /** Events with more than one data line. */
  multiLineData: number;
  /** Of those, events whose joined data is not valid JSON (nor [DONE]). */
  multiLineBroken: number;
  /** Blocks with an `event:` field but no data line (both OpenAI SDKs crash on them: they parse '' as JSON). */
  eventsWithoutData: number;
  /** Bytes after the last blank line: an event that was never terminated. */
  trailingBytes: number;
  /** The first line of each kind, for evidence. */
  examples: Record<string, string>;
}

/** Audits a complete (decoded) event stream body. */
export function auditFraming(body: Uint8Array): FramingAudit {
  const buf = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  const audit: FramingAudit = {
    bom: buf.length >= 3 && buf[0] === 0xef && buf[1] === 0xbb && buf[2] === 0xbf,
    lineEndings: { lf: 0, crlf: 0, cr: 0 },
    fields: { data: 0, event: 0, id: 0, retry: 0, comment: 0, other: 0 },
    eventNames: {},
    commentAfterId: false,
    multiLineData: 0,
    multiLineBroken: 0,
    eventsWithoutData: 0,
    trailingBytes: 0,
    examples: {},
  };
  let pos = audit.bom ? 3 : 0;
  let seenId = false;
  let dataLines: string[] = [];
  let namedBlock = false;
  let blockFirstLine = '';
  let lastBlank = pos;

  const example = (kind: string, line: string): void => {
    if (!(kind in audit.examples)) audit.examples[kind] = line.length > 100 ? `${line.slice(0, 100)}…` : line;
  };

  const endBlock = (): void => {
    if (dataLines.length > 1) {
      audit.multiLineData++;
      example('multi-line data', dataLines.map((l) => `data: ${l}`).join('\\n'));
      const joined = dataLines.join('\n');
      if (joined !== '[DONE]' && !isJson(joined)) audit.multiLineBroken++;
    }
    if (dataLines.length === 0 && namedBlock) {
      audit.eventsWithoutData++;
      example('event without data', blockFirstLine);
    }
    dataLines = [];
    namedBlock = false;
    blockFirstLine = '';
  };

  while (pos < buf.length) {
    const lf = buf.indexOf(0x0a, pos);
    const cr = buf.indexOf(0x0d, pos);
    if (lf === -1 && cr === -1) break;
    let end: number;
    let next: number;
    if (cr !== -1 && (lf === -1 || cr < lf)) {
      end = cr;
      if (buf[cr + 1] === 0x0a) {
        audit.lineEndings.crlf++;
        example('crlf', JSON.stringify(buf.toString('utf8', pos, Math.min(cr + 2, pos + 60))));
        next = cr + 2;
      } else {
        audit.lineEndings.cr++;
        example('cr', JSON.stringify(buf.toString('utf8', pos, Math.min(cr + 1, pos + 60))));
        next = cr + 1;
      }
    } else {
      end = lf;
      audit.lineEndings.lf++;
      next = lf + 1;
    }
    const line = buf.toString('utf8', pos, end);
    pos = next;
    if (line === '') {
      endBlock();
      lastBlank = pos;
      continue;
    }
    if (line.startsWith(':')) {
      audit.fields.comment++;
      example('comment', line);
      if (seenId) {
        audit.commentAfterId = true;
        example('comment after id', line);
      }
      continue;
    }
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    switch (field) {
      case 'data':
        audit.fields.data++;
        dataLines.push(value);
        break;
      case 'event':
        audit.fields.event++;
        audit.eventNames[value] = (audit.eventNames[value] ?? 0) + 1;
        example('event', line);
        namedBlock = true;
        if (blockFirstLine === '') blockFirstLine = line;
        break;
      case 'id':
        audit.fields.id++;
        seenId = true;
        example('id', line);
        break;
      case 'retry':
        audit.fields.retry++;
        example('retry', line);
        break;
      default:
        audit.fields.other++;
        example('other', line);
        break;
    }
  }
  audit.trailingBytes = buf.length - lastBlank;
  if (audit.trailingBytes > 0) example('unterminated', buf.toString('utf8', lastBlank, Math.min(buf.length, lastBlank + 80)));
  return audit;
}

function isJson(s: string): boolean {
  try {
    JSON.parse(s);
    return true;
  } catch {
    return false;
  }
}
