import type { FastifyInstance } from 'fastify';
import { pingDatabase } from '../db/ping.js';
import type { ServeContext } from './serve-context.js';

/** `GET /healthz` (the process answers; no dependencies) and `GET /readyz` (broker and database reachable). */
export function healthRoutes(app: FastifyInstance, ctx: ServeContext): void {
  app.get('/healthz', { config: { public: true }, schema: { summary: 'Liveness: the process answers', tags: ['health'] } }, () => ({
    status: 'HEALTHY',
    current_time: new Date().toISOString(),
  }));

  app.get(
    '/readyz',
    {
      config: { public: true },
      schema: { summary: 'Readiness: RabbitMQ and the database are reachable (503 names the one that is not)', tags: ['health'] },
    },
    async (_request, reply) => {
      const [broker, database] = await Promise.all([
        ctx.publisher.ready(),
        pingDatabase(ctx.db)
          .then(() => ({ ok: true, detail: 'connected' }))
          .catch((err: Error) => ({ ok: false, detail: err.message.split('\n')[0] ?? 'unreachable' })),
      ]);
      const down = [...(broker.ok ? [] : ['rabbitmq']), ...(database.ok ? [] : ['database'])];
      const checks = { rabbitmq: broker, database };
      if (down.length === 0) return { status: 'READY', checks };
      return reply
        .code(503)
        .header('retry-after', '5')
        .send({ error: { code: 'not_ready', message: `${down.join(' and ')} unreachable`, details: checks } });
    },
  );
}
