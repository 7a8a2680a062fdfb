/**
 * The metrics listener: /metrics (Prometheus text), /healthz (the process
 * answers) and /readyz (listening and the backend pool can serve). Binds to
 * loopback by default: the numbers say a lot about a mail system.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Endpoint } from '../config/schema.js';
import { registry } from './registry.js';

export interface Readiness {
  ready: boolean;
  reason?: string | undefined;
  [detail: string]: unknown;
}

/** Where /metrics text comes from: our registry, or a cluster primary's aggregate of its workers. */
export interface MetricsSource {
  metrics(): Promise<string>;
  readonly contentType: string;
}

export class MetricsServer {
  private readonly server: Server;

  constructor(
    private readonly readiness: () => Readiness,
    source: MetricsSource = registry,
  ) {
    this.server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { Allow: 'GET, HEAD' }).end();
        return;
      }
      if (path === '/metrics') {
        source.metrics().then(
          (text) => res.writeHead(200, { 'Content-Type': source.contentType }).end(text),
          (err: unknown) => res.writeHead(500, { 'Content-Type': 'text/plain' }).end(String(err)),
        );
      } else if (path === '/healthz') {
        res.writeHead(200, { 'Content-Type': 'text/plain' }).end('ok\n');
      } else if (path === '/readyz') {
        const state = this.readiness();
        res.writeHead(state.ready ? 200 : 503, { 'Content-Type': 'application/json' }).end(JSON.stringify(state) + '\n');
      } else {
        res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
      }
    });
  }

  listen(endpoint: Endpoint): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(endpoint.port, endpoint.host, () => {
        this.server.off('error', reject);
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
