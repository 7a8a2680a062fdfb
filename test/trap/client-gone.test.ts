/**
 * The trap's counter and its alert mean "our code failed" (docs/design.md §4.3, §4.6):
 * a client that left, told by the code TARPIT_ERR_CLIENT_GONE and never by message
 * text, is handed back uncounted and unlogged; anything else is still counted.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough, Writable, type Readable } from 'node:stream';
import { replyError, SmtpReplyError } from '../../src/core/errors.js';
import { createLogger } from '../../src/metrics/logger.js';
import { registry } from '../../src/metrics/registry.js';
import { Trap } from '../../src/trap/trap.js';

async function trapped(stage: string): Promise<number> {
  const metric = await registry.getSingleMetric('smtp_tarpit_handler_errors_total')?.get();
  return metric?.values.find((v) => v.labels.stage === stage)?.value ?? 0;
}

function trapWithLog(): { trap: Trap; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { trap: new Trap(createLogger('info', sink)), lines };
}

test('catch(): a client-gone error is returned as it is, not counted, not logged', async () => {
  const { trap, lines } = trapWithLog();
  const before = await trapped('body');
  const gone = replyError('TARPIT_ERR_CLIENT_GONE', { cause: new Error('Connection closed before the message was received in full') });
  assert.equal(trap.catch('body', gone, { sessionId: 's1' }), gone);
  assert.equal(await trapped('body'), before);
  assert.deepEqual(lines, []);
});

test('catch(): told by code, not by text: a plain Error with the same words is a trapped error', async () => {
  const { trap, lines } = trapWithLog();
  const before = await trapped('body');
  const reply = trap.catch('body', new Error('Connection closed before the transaction completed'), { sessionId: 's2' });
  assert.equal(reply.code, 'TARPIT_ERR_INTERNAL');
  assert.equal(await trapped('body'), before + 1);
  assert.equal(lines.filter((l) => l.msg === 'trapped error').length, 1);
});

test('dataHook(): a body failed by a client that left answers with its own error and counts nothing', async () => {
  const { trap, lines } = trapWithLog();
  const before = await trapped('body');
  const stream = new PassThrough();
  const hook = trap.dataHook(
    () => ({ sessionId: 's3' }),
    (body: Readable) =>
      new Promise<string>((_resolve, reject) => {
        body.on('error', (cause) => reject(replyError('TARPIT_ERR_CLIENT_GONE', { cause })));
      }),
  );
  const answered = new Promise<Error | null | undefined>((resolve) => hook(stream, {}, (err) => resolve(err)));
  stream.write('half a message');
  stream.destroy(Object.assign(new Error('Connection closed before the message was received in full'), { code: 'ECONNECTION' }));
  const err = await answered;
  assert.ok(err instanceof SmtpReplyError);
  assert.equal(err.code, 'TARPIT_ERR_CLIENT_GONE');
  assert.equal(await trapped('body'), before);
  assert.deepEqual(lines, []);
});

test('hook() and guard(): a client-gone rejection at MAIL or in a listener counts nothing either', async () => {
  const { trap, lines } = trapWithLog();
  const mailBefore = await trapped('mail');
  const quitBefore = await trapped('quit');
  const hook = trap.hook('mail', () => ({ sessionId: 's4' }), () => Promise.reject(replyError('TARPIT_ERR_CLIENT_GONE')));
  const err = await new Promise<Error | null | undefined>((resolve) => hook((e) => resolve(e)));
  assert.equal((err as SmtpReplyError).code, 'TARPIT_ERR_CLIENT_GONE');
  trap.guard('quit', () => {
    throw replyError('TARPIT_ERR_CLIENT_GONE');
  })();
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(await trapped('mail'), mailBefore);
  assert.equal(await trapped('quit'), quitBefore);
  assert.deepEqual(lines, []);
});
