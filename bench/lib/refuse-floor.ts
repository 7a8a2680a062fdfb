/**
 * The floor under a refusal: a bare Node listener that answers every
 * connection with a 421 and closes it, nothing else (bench/flood.ts floods it
 * as it floods the proxy). Node's own work per connection (the socket object,
 * the accept, the write, the close) is what any Node front pays; the proxy's
 * CPU per refusal is read against it.
 *
 *   node --import tsx bench/lib/refuse-floor.ts PORT
 */
import { createServer, type Socket } from 'node:net';

const REPLY = '421 4.7.0 Too many connections from your address\r\n';

function destroySelf(this: Socket): void {
  this.destroy();
}

const server = createServer({ pauseOnConnect: true, noDelay: true }, (socket) => {
  socket.on('error', () => undefined);
  socket.on('finish', destroySelf);
  socket.end(REPLY);
});
server.listen({ host: '127.0.0.1', port: Number(process.argv[2]), backlog: 4096 }, () => console.log('ready'));
