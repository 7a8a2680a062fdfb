/**
 * The backend's EHLO reply as a keyword → parameters map (RFC 5321 §4.1.1.1:
 * the first line is the greeting, each further line one ehlo-keyword with
 * optional parameters; keywords are case-insensitive, so we upper-case them).
 */
import type { Reply } from '../core/reply.js';

export type Capabilities = ReadonlyMap<string, readonly string[]>;

export function parseCapabilities(reply: Reply): Capabilities {
  const caps = new Map<string, readonly string[]>();
  for (const line of reply.text.split('\n').slice(1)) {
    const [keyword, ...params] = line.trim().split(/\s+/);
    if (keyword === undefined || keyword === '') continue;
    // XCLIENT attribute names are matched upper-case too (Postfix lists them so).
    const upper = keyword.toUpperCase();
    caps.set(upper, upper === 'XCLIENT' ? params.map((p) => p.toUpperCase()) : params);
  }
  return caps;
}
