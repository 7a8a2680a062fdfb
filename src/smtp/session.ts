/**
 * What we keep per client session beside smtp-server's own session object:
 * the backend connection it holds, its transactions and their results. It is
 * summarised in one JSON log line when the session ends (DESIGN §6).
 */
import type { Reply } from '../core/reply.js';
import { replyText } from '../core/reply.js';
import type { Stage } from '../core/stage.js';
import type { SessionPolicy } from '../policy/session-policy.js';
import type { BackendConnection } from '../relay/backend-connection.js';
import type { Vetted } from './front.js';

export type MessageResult = 'relayed' | 'tempfailed' | 'rejected' | 'aborted';

export interface RecipientRecord {
  readonly address: string;
  readonly reply: string;
}

export interface MessageRecord {
  readonly from: string;
  readonly rcpt: RecipientRecord[];
  result?: MessageResult;
  reply?: string;
  bytes?: number;
}

export class RelaySession {
  readonly startedAt = performance.now();
  backend: BackendConnection | undefined;
  /** Hooks in flight: a shutdown waits for these so it never cuts a transaction. */
  pending = 0;
  stage: Stage = 'connect';
  readonly messages: MessageRecord[] = [];
  /** Recipients the backend refused with 5xx in this session (recipient harvesting). */
  rejectedRecipients = 0;
  readonly id: string;
  readonly address: string;
  readonly port: number;

  constructor(readonly vetted: Vetted) {
    this.id = vetted.id;
    this.address = vetted.remoteAddress;
    this.port = vetted.remotePort;
  }

  /** The session's standing with the policy it started with. */
  get policy(): SessionPolicy {
    return this.vetted.policy;
  }

  get current(): MessageRecord | undefined {
    return this.messages[this.messages.length - 1];
  }

  startMessage(from: string): MessageRecord {
    const record: MessageRecord = { from, rcpt: [] };
    // Bounded: a client may loop MAIL/RSET forever; the log keeps the last 50.
    if (this.messages.length >= 50) this.messages.shift();
    this.messages.push(record);
    return record;
  }

  finishMessage(result: MessageResult, reply: Reply | string, bytes?: number): void {
    const current = this.current;
    if (!current || current.result) return;
    current.result = result;
    current.reply = typeof reply === 'string' ? reply : `${reply.code} ${replyText(reply)}`;
    if (bytes !== undefined) current.bytes = bytes;
  }

  elapsedSeconds(): number {
    return (performance.now() - this.startedAt) / 1000;
  }
}
