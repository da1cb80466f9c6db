/**
 * The Docker engine's event stream, as the driver's subscriptions see it:
 * container start, die, destroy and health events carrying given labels,
 * mapped onto DriverEvents. A stream that ends or fails ends its
 * subscription with an error (the agent's EngineWatch subscribes again);
 * a torn or foreign line does not.
 */
import type Docker from 'dockerode';
import { DriverError, type DriverEvent } from '../driver.js';
import { lineSplitter, type DockerEngine } from './engine.js';
import { handleOf, labelFilters } from './handles.js';

/** Event attributes that are not container labels (Docker mixes both into Actor.Attributes). */
const NON_LABEL_ATTRIBUTES = new Set(['name', 'image', 'exitCode', 'signal', 'execDuration']);

/** EngineEvents holds the driver's event subscriptions, so that close() ends every one still open. */
export class EngineEvents {
  private readonly subscriptions = new Set<() => void>();

  constructor(private readonly engine: DockerEngine) {}

  /** subscribe is Driver.events: it returns the function that ends the subscription. */
  subscribe(labels: Record<string, string>, onEvent: (e: DriverEvent) => void, onError: (err: Error) => void, onOpen?: () => void): () => void {
    const { engine } = this;
    const ac = new AbortController();
    let stopped = false;
    let failed = false;
    let stream: NodeJS.ReadableStream | undefined;
    const fail = (err: Error) => {
      if (stopped || failed) return;
      failed = true;
      this.subscriptions.delete(stop);
      onError(err);
    };
    const stop = () => {
      if (stopped) return;
      stopped = true;
      this.subscriptions.delete(stop);
      ac.abort();
      (stream as unknown as { destroy?: () => void } | undefined)?.destroy?.();
    };
    this.subscriptions.add(stop);

    const label = labelFilters(labels);
    // `since` = now: events between this call and the stream's connection are
    // replayed by the engine instead of lost.
    const now = Date.now();
    const since = `${Math.floor(now / 1000)}.${String(now % 1000).padStart(3, '0')}`;
    const opts = {
      since,
      filters: { type: ['container'], event: ['start', 'die', 'destroy', 'health_status'], ...(label.length ? { label } : {}) },
      abortSignal: ac.signal,
    };
    engine.docker.getEvents(opts as unknown as Docker.GetEventsOptions).then(
      (s) => {
        stream = s;
        if (stopped) {
          (s as unknown as { destroy?: () => void }).destroy?.();
          return;
        }
        onOpen?.();
        const split = lineSplitter((line) => {
          let msg: DockerEventMessage;
          try {
            msg = JSON.parse(line) as DockerEventMessage;
          } catch {
            return; // A torn or foreign line must not end the subscription.
          }
          const ev = eventOf(msg);
          if (ev && !stopped) onEvent(ev);
        });
        s.on('data', (chunk: Buffer | string) => {
          if (!stopped) split(chunk);
        });
        s.on('error', (err: Error) => fail(engine.toDriverError(err)));
        s.on('end', () => fail(new DriverError('docker event stream ended', 'engine_unavailable')));
        s.on('close', () => fail(new DriverError('docker event stream closed', 'engine_unavailable')));
      },
      (err: unknown) => fail(engine.toDriverError(err)),
    );
    return stop;
  }

  /** close ends every subscription still open (their onError is not called). */
  close(): void {
    for (const stop of [...this.subscriptions]) stop();
  }
}

interface DockerEventMessage {
  Type?: string;
  Action?: string;
  status?: string;
  id?: string;
  Actor?: { ID?: string; Attributes?: Record<string, string> };
}

/** eventOf maps one engine event onto a DriverEvent; events the driver does not report give undefined. */
function eventOf(msg: DockerEventMessage): DriverEvent | undefined {
  if (msg.Type !== undefined && msg.Type !== 'container') return undefined;
  const action = msg.Action ?? msg.status ?? '';
  const attrs = msg.Actor?.Attributes ?? {};
  const id = msg.Actor?.ID ?? msg.id ?? '';
  if (!id) return undefined;
  const handle = handleOf(id, attrs.name ?? '');
  const labels: Record<string, string> = {};
  for (const [k, v] of Object.entries(attrs)) if (!NON_LABEL_ATTRIBUTES.has(k)) labels[k] = v;
  if (action === 'start') return { type: 'start', handle, labels };
  if (action === 'destroy') return { type: 'destroy', handle, labels };
  if (action === 'die') {
    const code = Number.parseInt(attrs.exitCode ?? '', 10);
    const ev: DriverEvent = { type: 'die', handle, labels, exitCode: Number.isNaN(code) ? -1 : code };
    if (attrs.oomKilled === 'true') ev.oomKilled = true;
    return ev;
  }
  if (action.startsWith('health_status')) {
    const status = action.slice(action.indexOf(':') + 1).trim();
    if (status === 'healthy' || status === 'unhealthy' || status === 'starting') return { type: 'health', handle, labels, status };
  }
  return undefined;
}
