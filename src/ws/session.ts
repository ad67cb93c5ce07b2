import { SluiceError } from '../errors.ts';
import { exceedsJsonDepth, MAX_JSON_DEPTH } from '../openai/json-depth.ts';

/** Close codes used by the WebSocket endpoints (RFC 6455 §7.4.1). */
export const CLOSE = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  UNSUPPORTED_DATA: 1003,
  INVALID_PAYLOAD: 1007,
  MESSAGE_TOO_BIG: 1009,
  INTERNAL_ERROR: 1011,
} as const;

/** One protocol spoken on a WebSocket connection (`/v1/ws` or the Responses WebSocket mode). */
export interface WsSession {
  /** A text message from the client (already bounded by `websocket.max_message_bytes`). */
  onMessage(text: string): void;
  /** The connection closed: abort every upstream it owns. */
  onClose(): void;
  /** The gateway is shutting down: refuse new work, close once in-flight generations have ended. */
  drain(): void;
  /** Generations running (or queued) on the connection. */
  readonly active: number;
}

/** Parses a client message: a JSON object with a string `type`. Returns the error to close the connection with. */
export function parseClientMessage(text: string): Record<string, unknown> | SluiceError {
  let msg: unknown;
  try {
    msg = JSON.parse(text);
  } catch (err) {
    return new SluiceError('SLUICE_WS_INVALID_MESSAGE', `Messages must be JSON objects; this one is not JSON: ${(err as Error).message}`);
  }
  if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) {
    return new SluiceError('SLUICE_WS_INVALID_MESSAGE', 'Messages must be JSON objects with a string "type".');
  }
  // As for HTTP bodies (src/openai/request.ts): the request is re-serialized on its way upstream, which recurses.
  if (exceedsJsonDepth(msg)) {
    return new SluiceError('SLUICE_WS_INVALID_MESSAGE', `Messages may nest arrays and objects at most ${MAX_JSON_DEPTH} levels deep.`);
  }
  if (typeof (msg as Record<string, unknown>)['type'] !== 'string') {
    return new SluiceError('SLUICE_WS_INVALID_MESSAGE', 'Messages must be JSON objects with a string "type".', { param: 'type' });
  }
  return msg as Record<string, unknown>;
}
