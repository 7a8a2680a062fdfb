/**
 * The demo's backend MTA: what Postfix on 127.0.0.1:10025 is in production,
 * here an smtp-server sink on a loopback port. It knows a few mailboxes and
 * refuses the rest with 550 5.1.1 at RCPT (as Postfix does with
 * local_recipient_maps), which is what lets the proxy spot a dictionary
 * attack. It accepts XCLIENT, like Postfix with smtpd_authorized_xclient_hosts:
 * smtp-tarpit refuses to start in front of a backend that does not, since the
 * backend would then see every client as the proxy's own loopback address.
 */
import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';

export const MAILBOXES = ['postmaster@demo.example', 'alice@demo.example', 'bob@demo.example'];

export interface Delivered {
  readonly from: string;
  readonly to: readonly string[];
  /** The client the proxy named in XCLIENT ADDR: the real sender, not the proxy. */
  readonly client: string;
}

export interface DemoBackend {
  readonly port: number;
  readonly delivered: readonly Delivered[];
  /** RCPTs refused with 550 5.1.1. */
  readonly unknownRecipients: () => number;
  close(): Promise<void>;
}

export async function startBackend(): Promise<DemoBackend> {
  const delivered: Delivered[] = [];
  let unknown = 0;
  const server = new SMTPServer({
    name: 'backend.demo.example',
    authOptional: true,
    disabledCommands: ['AUTH', 'STARTTLS'],
    disableReverseLookup: true,
    useXClient: true,
    logger: false,
    onRcptTo(address, _session, cb) {
      if (MAILBOXES.includes(address.address.toLowerCase())) return cb();
      unknown++;
      cb(Object.assign(new Error('5.1.1 <' + address.address + '>: Recipient address rejected: User unknown'), { responseCode: 550 }));
    },
    onData(stream, session, cb) {
      stream.resume(); // a sink: the body is read and dropped
      stream.on('end', () => {
        const mailFrom = session.envelope.mailFrom;
        delivered.push({
          from: mailFrom ? mailFrom.address : '',
          to: session.envelope.rcptTo.map((r) => r.address),
          client: session.remoteAddress,
        });
        cb(null, '2.0.0 Ok: queued');
      });
    },
  });
  server.on('error', () => undefined); // a client reset mid-session must not end the demo
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.server.address() as AddressInfo).port,
    delivered,
    unknownRecipients: () => unknown,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
