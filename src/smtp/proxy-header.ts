/**
 * Reads a PROXY protocol header (HAProxy proxy-protocol.txt, v1 text or v2
 * binary) off a freshly accepted socket, before smtp-server sees it.
 *
 * Contract:
 * - Only header bytes are consumed. Whatever arrived after the header in the
 *   same chunk (a pipelining client's EHLO) is `unshift()`ed back, so the next
 *   reader gets the stream exactly as the client sent it.
 * - On success and on failure the socket is left paused with none of our
 *   listeners or timers attached; the caller resumes it (`pipe()` does) or
 *   destroys it. Spec §2.2 says a receiver must drop a connection whose
 *   header is invalid, so a `ProxyHeaderError` gets no SMTP reply: close it.
 * - Only call this for peers in the trusted-proxy list: a header from anyone
 *   else would let them choose the address every policy check sees.
 *
 * Not proxy-protocol-js: its 4.0.6 parser accepts "PROXY TCP4 hello world
 * 99999 1", has no 107-byte bound, rejects the spec's bare "PROXY UNKNOWN\r\n",
 * ignores the v2 length field (TLV bytes would reach the SMTP layer as data),
 * returns undefined addresses for truncated v2 input, and throws non-Error values.
 */
import net from 'node:net';

import { formatIp } from '../core/ip.js';

export type ProxyHeaderResult =
  | {
      readonly kind: 'proxied';
      /** The original client, as the load balancer saw it. */
      readonly remoteAddress: string;
      readonly remotePort: number;
      /** The address the client connected to, when the header carries it. */
      readonly localAddress?: string;
      readonly localPort?: number;
      readonly version: 1 | 2;
    }
  /** v2 LOCAL, v1 UNKNOWN, or a family we do not route: keep the socket's own address. */
  | { readonly kind: 'local' };

export interface ReadProxyHeaderOptions {
  /** Milliseconds to wait for the complete header from the first byte on. */
  timeoutMs: number;
  /**
   * Largest v2 header accepted, in bytes, 16-byte fixed part included.
   * v1 is always capped at 107 bytes (spec §2.1).
   * @default 528 (16 + 512 bytes of addresses and TLVs)
   */
  maxBytes?: number;
}

export const PROXY_HEADER_REASONS = ['malformed', 'too-long', 'timeout', 'closed', 'socket-error'] as const;
export type ProxyHeaderReason = (typeof PROXY_HEADER_REASONS)[number];

export class ProxyHeaderError extends Error {
  override readonly name = 'ProxyHeaderError';
  readonly reason: ProxyHeaderReason;

  constructor(reason: ProxyHeaderReason, detail: string, options?: { cause?: unknown }) {
    super(`PROXY header ${reason}: ${detail}`, options);
    this.reason = reason;
  }
}

/** Spec §2.1: "PROXY UNKNOWN" + 2 x 39-char IPv6 + 2 x 5-digit ports + spaces + CRLF. */
const V1_MAX_BYTES = 107;
const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
/** Spec §2.2: chosen so it can never begin a valid v1 header or any text protocol. */
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V2_FIXED_BYTES = 16;
const DEFAULT_MAX_BYTES = V2_FIXED_BYTES + 512;
/** Spec §2.2 address block sizes: AF_INET 2x4+2x2, AF_INET6 2x16+2x2. */
const V2_INET_BYTES = 12;
const V2_INET6_BYTES = 36;
const PORT_RE = /^(0|[1-9]\d{0,4})$/;

/** One step of `parseProxyHeader`: need more bytes, or the header and its length. */
export type ParseStep = { done: false } | { done: true; result: ProxyHeaderResult; consumed: number };

export async function readProxyHeader(socket: net.Socket, options: ReadProxyHeaderOptions): Promise<ProxyHeaderResult> {
  // Never below a TLV-less IPv6 header, or a misconfigured limit would refuse
  // every IPv6 client instead of only oversized TLV blocks.
  const maxBytes = Math.max(options.maxBytes ?? DEFAULT_MAX_BYTES, V2_FIXED_BYTES + V2_INET6_BYTES);
  if (socket.destroyed || socket.readableEnded) {
    throw new ProxyHeaderError('closed', 'socket closed before the header');
  }

  return new Promise<ProxyHeaderResult>((resolve, reject) => {
    let buffered: Buffer<ArrayBufferLike> = Buffer.alloc(0);
    let settled = false;

    const finish = (outcome: { result: ProxyHeaderResult; rest: Buffer } | { error: ProxyHeaderError }): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.pause();
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('close', onClose);
      socket.off('error', onError);
      if ('error' in outcome) {
        reject(outcome.error);
        return;
      }
      // Pause first: unshift onto a paused stream keeps the rest ahead of any
      // chunks still queued, and nothing is emitted until the caller resumes.
      if (outcome.rest.length > 0) socket.unshift(outcome.rest);
      resolve(outcome.result);
    };

    const onData = (chunk: Buffer | string): void => {
      const bytes = typeof chunk === 'string' ? Buffer.from(chunk, 'latin1') : chunk;
      buffered = buffered.length === 0 ? bytes : Buffer.concat([buffered, bytes]);
      let step: ParseStep;
      try {
        step = parseProxyHeader(buffered, maxBytes);
      } catch (err) {
        finish({ error: err instanceof ProxyHeaderError ? err : new ProxyHeaderError('malformed', String(err), { cause: err }) });
        return;
      }
      if (step.done) finish({ result: step.result, rest: buffered.subarray(step.consumed) });
    };
    const onEnd = (): void => finish({ error: new ProxyHeaderError('closed', `peer ended after ${buffered.length} header bytes`) });
    const onClose = (): void => finish({ error: new ProxyHeaderError('closed', `socket closed after ${buffered.length} header bytes`) });
    const onError = (err: Error): void => finish({ error: new ProxyHeaderError('socket-error', err.message, { cause: err }) });

    const timer = setTimeout(() => {
      finish({ error: new ProxyHeaderError('timeout', `no complete header within ${options.timeoutMs} ms (${buffered.length} bytes read)`) });
    }, options.timeoutMs);

    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('close', onClose);
    socket.on('error', onError);
    // A stream paused explicitly (or by an earlier reader) stays paused when a
    // 'data' listener is added, so start the flow ourselves.
    socket.resume();
  });
}

/**
 * Decides from the bytes so far: need more, a complete header, or throw.
 * Exported for unit tests and fuzzing; `readProxyHeader` is the API.
 */
export function parseProxyHeader(buf: Buffer, maxBytes: number = DEFAULT_MAX_BYTES): ParseStep {
  // Reject on the first byte that cannot start either header, so a client that
  // is not behind a proxy fails fast instead of waiting for the timeout.
  if (startsWithPrefixOf(buf, V2_SIGNATURE)) {
    return buf.length < V2_FIXED_BYTES ? { done: false } : parseV2(buf, maxBytes);
  }
  if (startsWithPrefixOf(buf, V1_PREFIX)) {
    return buf.length < V1_PREFIX.length ? { done: false } : parseV1(buf);
  }
  throw new ProxyHeaderError('malformed', 'no PROXY signature');
}

/** True when `buf` and `prefix` agree on their common length. */
function startsWithPrefixOf(buf: Buffer, prefix: Buffer): boolean {
  const n = Math.min(buf.length, prefix.length);
  for (let i = 0; i < n; i++) if (buf[i] !== prefix[i]) return false;
  return true;
}


function parseV1(buf: Buffer): ParseStep {
  const lf = buf.indexOf(0x0a);
  if (lf === -1) {
    if (buf.length >= V1_MAX_BYTES) throw new ProxyHeaderError('too-long', `v1 header longer than ${V1_MAX_BYTES} bytes`);
    return { done: false };
  }
  const consumed = lf + 1;
  if (consumed > V1_MAX_BYTES) throw new ProxyHeaderError('too-long', `v1 header longer than ${V1_MAX_BYTES} bytes`);
  if (buf[lf - 1] !== 0x0d) throw new ProxyHeaderError('malformed', 'v1 header not terminated by CRLF');

  const line = buf.subarray(0, lf - 1).toString('latin1');
  const fields = line.split(' ');
  // Spec §2.1: with UNKNOWN the rest of the line up to CRLF is ignored.
  if (fields[1] === 'UNKNOWN') return { done: true, result: { kind: 'local' }, consumed };

  const [, proto, src, dst, sport, dport] = fields;
  if (fields.length !== 6 || proto === undefined || src === undefined || dst === undefined || sport === undefined || dport === undefined) {
    throw new ProxyHeaderError('malformed', 'v1 header needs exactly: PROXY TCP4|TCP6 src dst sport dport');
  }
  const isFamily = proto === 'TCP4' ? net.isIPv4 : proto === 'TCP6' ? net.isIPv6 : undefined;
  if (isFamily === undefined) throw new ProxyHeaderError('malformed', 'v1 protocol must be TCP4, TCP6 or UNKNOWN');
  if (!isFamily(src) || !isFamily(dst) || src.includes('%') || dst.includes('%')) {
    throw new ProxyHeaderError('malformed', `v1 ${proto} addresses are not ${proto === 'TCP4' ? 'IPv4' : 'IPv6'}`);
  }
  return {
    done: true,
    consumed,
    result: { kind: 'proxied', version: 1, remoteAddress: src, remotePort: v1Port(sport), localAddress: dst, localPort: v1Port(dport) },
  };
}

function v1Port(text: string): number {
  const port = PORT_RE.test(text) ? Number(text) : NaN;
  if (!(port <= 0xffff)) throw new ProxyHeaderError('malformed', 'v1 port is not a decimal 0-65535 without leading zeros');
  return port;
}

function parseV2(buf: Buffer, maxBytes: number): ParseStep {
  const verCmd = buf.readUInt8(12);
  const famProto = buf.readUInt8(13);
  const length = buf.readUInt16BE(14);
  const total = V2_FIXED_BYTES + length;

  if (verCmd >> 4 !== 2) throw new ProxyHeaderError('malformed', `v2 version nibble ${verCmd >> 4}, expected 2`);
  const command = verCmd & 0x0f;
  if (command > 1) throw new ProxyHeaderError('malformed', `v2 command ${command} is neither LOCAL nor PROXY`);
  const family = famProto >> 4;
  const transport = famProto & 0x0f;
  // Spec §2.2: other values "must be rejected as invalid by receivers".
  if (family > 3 || transport > 2) throw new ProxyHeaderError('malformed', `v2 family/transport byte 0x${famProto.toString(16)}`);
  // Checked before waiting for the body, so a huge length field cannot make us
  // buffer (or wait for) up to 64 KiB from a confused or hostile peer.
  if (total > maxBytes) throw new ProxyHeaderError('too-long', `v2 header of ${total} bytes exceeds ${maxBytes}`);
  if (buf.length < total) return { done: false };

  // Spec §2.2: LOCAL means the proxy's own connection (health checks); the
  // receiver uses the real endpoints and ignores the address block.
  if (command === 0) return { done: true, result: { kind: 'local' }, consumed: total };

  // Only TCP over IPv4/IPv6 names an SMTP client we can route. UNSPEC, AF_UNIX
  // and DGRAM fall back to the real endpoints, which the spec allows.
  const STREAM = 1;
  if (transport !== STREAM || (family !== 1 && family !== 2)) {
    return { done: true, result: { kind: 'local' }, consumed: total };
  }
  const need = family === 1 ? V2_INET_BYTES : V2_INET6_BYTES;
  if (length < need) throw new ProxyHeaderError('malformed', `v2 length ${length} too short for its address family (${need})`);

  // TLVs (bytes after the address block, up to `total`) are skipped unread:
  // nothing here depends on them, and PP2_TYPE_CRC32C is optional for senders.
  // Written as RFC 5952 text, so the address reads the same as one a socket
  // reports (an IPv4-mapped one too: `::ffff:192.0.2.1`, not folded).
  const addrLen = family === 1 ? 4 : 16;
  const ipFamily = family === 1 ? 'ipv4' : 'ipv6';
  const at = V2_FIXED_BYTES;
  const remoteAddress = formatIp({ family: ipFamily, bytes: buf.subarray(at, at + addrLen) });
  const localAddress = formatIp({ family: ipFamily, bytes: buf.subarray(at + addrLen, at + 2 * addrLen) });
  const remotePort = buf.readUInt16BE(at + 2 * addrLen);
  const localPort = buf.readUInt16BE(at + 2 * addrLen + 2);
  return { done: true, consumed: total, result: { kind: 'proxied', version: 2, remoteAddress, remotePort, localAddress, localPort } };
}
