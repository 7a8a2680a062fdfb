/**
 * After the end: the hold has written its end reply (a survivor's, the
 * profile's end, maxHold's) and, unless that reply was 421, the client still
 * has the floor. RFC 5321 §3.8 lets a server close on its own initiative only
 * after 421 (or after QUIT's 221); closing right after a 451 pulls the
 * connection from under a patient MTA (swaks: "Remote host closed connection
 * unexpectedly"; Postfix's RSET went unanswered). So the session stays open
 * for the client's QUIT, answering at once: the client is being let go,
 * nothing is held or judged any more.
 *
 * What each command gets here is this module's; hold.ts keeps the socket and
 * the one timer, whose end grace (`limits.endGrace`) counts from the end reply
 * and is never re-armed, so a client cannot stretch it with a NOOP every few
 * seconds; `limits.endCommands` bounds what it can send meanwhile.
 */
import type { Reply } from '../core/reply.js';
import { R, hostReply, verbOf } from './hold-commands.js';
import type { LineResult } from './line-reader.js';

/** What a command that asks anything else of an ended session gets: out of sequence, as QUIT is all that is left. */
const ENDED: Reply = { code: 503, enhanced: '5.5.1', text: 'Error: this session is over, send QUIT' };

/** Whether the server closes after writing `reply`: only 421 and QUIT's 221 allow it (RFC 5321 §3.8, §4.1.1.10). */
export function closesSession(reply: Reply): boolean {
  return reply.code === 421 || reply.code === 221;
}

/**
 * One ended session's side of the dialogue. Made only when a session ends
 * politely (a held session carries none of it), and small: the end reply, a
 * count, and what the 421s need.
 */
export class HoldEnding {
  /** Commands answered since the end reply, QUIT aside. */
  private answered = 0;

  constructor(
    /** The end reply, repeated to a client that tries again on this connection. */
    private readonly end: Reply,
    private readonly hostname: string,
    private readonly maxCommands: number,
  ) {}

  /**
   * The immediate reply to a line received after the end; a reply for which
   * `closesSession` holds is the session's last.
   */
  answer(line: LineResult): Reply {
    const verb = line.kind === 'line' ? verbOf(line.text) : '';
    // What we are waiting for: always answered, whatever came before (RFC 5321 §4.1.1.10).
    if (verb === 'QUIT') return R.bye;
    if (++this.answered > this.maxCommands) return hostReply.tooManyCommands(this.hostname);
    if (line.kind === 'tooLong') return R.tooLong;
    switch (verb) {
      // Always allowed and harmless (RFC 5321 §4.1.1.5, §4.1.1.9); there is no transaction left to reset.
      case 'RSET':
      case 'NOOP':
        return R.ok;
      // A new session or transaction on this connection gets the same answer as the one that ended it, at once: a
      // 250 would only invite the next step, which would get it anyway. A Postfix that reuses the connection for its
      // next queued message (RSET, MAIL) so defers that message with the same reason, and a 5xx end stays a refusal.
      case 'HELO':
      case 'EHLO':
      case 'MAIL':
      case 'RCPT':
      case 'DATA':
      case 'BDAT':
        return this.end;
      // VRFY, EXPN, HELP, STARTTLS, AUTH, unknown verbs: "503 bad sequence of commands", what RFC 5321 §3.1 has a
      // server that refused the session at its greeting answer while it waits for QUIT. It makes no claim the state
      // would make false (252's "will accept message") or one beside the point (500 unknown, 502 not implemented).
      default:
        return ENDED;
    }
  }
}
