import { isIP } from 'node:net';
import type { Endpoint } from './schema.js';

/** Parses `host:port`, with IPv6 literals bracketed (`[::1]:2525`). */
export function parseEndpoint(text: string): Endpoint {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]\s]+)):(\d{1,5})$/.exec(text);
  if (!m) throw new Error(`"${text}" is not host:port (write IPv6 as [::1]:25)`);
  const host = (m[1] ?? m[2]) as string;
  const port = Number(m[3]);
  if (port > 65535) throw new Error(`port ${port} is out of range`);
  if (m[1] !== undefined && isIP(host) !== 6) throw new Error(`"${host}" is not an IPv6 address`);
  return { host, port };
}

