export { H11Connection } from './connection.js';
export { H11Error, InvalidHeaderError, LocalProtocolError } from './errors.js';
export { STATUS_TEXT, toBytes } from './serializer.js';
export { createDateCache } from './date.js';
export type { ReadStateName, WriteStateName } from './states.js';
export type {
  BodyKind, DataEvent, EndEvent, ErrorEvent, H11Event, H11Options, HeaderValue, HttpVersion, OutgoingHeaders, Output,
  ReadState, RejectStatus, RequestEvent, WriteState,
} from './types.js';
