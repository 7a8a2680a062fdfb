/**
 * Connection caps (docs/design.md §4.5): past the total or per-client cap a new
 * client gets a clear 421 at once, before any banner; others are unaffected.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SmtpClient } from '../helpers/smtp-client.js';
import { startBackend } from '../helpers/smtp-backend.js';
import { withProxy } from '../helpers/with-proxy.js';
import { waitFor } from '../helpers/wait-for.js';

test('the per-client cap answers 421 4.7.0 to one address while another address is still served', async (t) => {
  const backend = await startBackend();
  t.after(() => backend.close());
  await withProxy({ backendPort: backend.port, config: { limits: { maxConnectionsPerClient: 2 } } }, async (p) => {
    const a1 = await SmtpClient.open({ port: p.port, localAddress: '127.0.2.1' });
    const a2 = await SmtpClient.open({ port: p.port, localAddress: '127.0.2.1' });
    const a3 = await SmtpClient.connect({ port: p.port, localAddress: '127.0.2.1' });
    const refused = await a3.read();
    assert.equal(refused.code, 421);
    assert.equal(refused.enhanced, '4.7.0');
    await a3.waitClosed();
    const b = await SmtpClient.open({ port: p.port, localAddress: '127.0.2.2' });
    await b.quit();
    await a1.quit();
    // A closed connection frees its place, once the proxy has seen the close: a loaded machine may take
    // a while, so a 421 meanwhile is retried rather than a fixed sleep raced.
    let a4: SmtpClient | undefined;
    await waitFor(
      async () => {
        const c = await SmtpClient.connect({ port: p.port, localAddress: '127.0.2.1' });
        if ((await c.read()).code === 220) a4 = c;
        else c.destroy();
        return a4 !== undefined;
      },
      { everyMs: 50, what: 'a place for 127.0.2.1 after its first client left' },
    );
    await Promise.all([a2.quit(), a4!.quit()]);
  });
});

test('the total cap answers 421 4.3.2 to the next client', async (t) => {
  const backend = await startBackend();
  t.after(() => backend.close());
  await withProxy({ backendPort: backend.port, config: { limits: { maxConnections: 3 }, tarpit: { maxHeld: 2 } } }, async (p) => {
    const held = await Promise.all([1, 2, 3].map((i) => SmtpClient.open({ port: p.port, localAddress: `127.0.3.${i}` })));
    const extra = await SmtpClient.connect({ port: p.port, localAddress: '127.0.3.9' });
    const refused = await extra.read();
    assert.equal(refused.code, 421);
    assert.equal(refused.enhanced, '4.3.2');
    await Promise.all(held.map((c) => c.quit()));
  });
});
