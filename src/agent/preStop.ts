/**
 * stopContainer stops one container the way the kubelet does: its preStop
 * hook first (a command run in it, or a pause), then the stop signal, the
 * whole within its grace period: the signal gets what the hook left of it
 * (at least a second, so a hook that used it all does not turn into a kill
 * without a signal). A hook that fails or times out is logged, and the
 * container is stopped all the same.
 */
import type { Logger } from 'pino';
import type { ContainerSpec } from '../api/types.js';
import { sleep, type Clock } from '../base/clock.js';
import { DriverError, type Driver, type TaskHandle } from './driver.js';

/** What the signal always gets, however long the hook took. */
const MIN_SIGNAL_GRACE_MS = 1000;

export async function stopContainer(driver: Driver, clock: Clock, log: Logger, handle: TaskHandle, spec: Pick<ContainerSpec, 'preStop' | 'stopGracePeriodMs' | 'stopSignal'>, who: Record<string, string>): Promise<void> {
  const grace = spec.stopGracePeriodMs;
  const started = clock.now();
  const hook = spec.preStop;
  if (hook?.command) {
    try {
      const r = await driver.exec(handle, hook.command, grace);
      if (r.exitCode !== 0) log.warn({ ...who, exitCode: r.exitCode, output: r.output.slice(0, 200) }, r.exitCode === -1 ? 'preStop hook timed out; stopping the container' : 'preStop hook failed; stopping the container');
    } catch (e) {
      if (e instanceof DriverError && e.reason === 'engine_unavailable') throw e;
      log.warn({ ...who, err: (e as Error).message }, 'preStop hook could not run; stopping the container');
    }
  } else if (hook?.sleepMs) await sleep(Math.min(hook.sleepMs, grace));
  await driver.stop(handle, hook ? Math.max(MIN_SIGNAL_GRACE_MS, grace - (clock.now() - started)) : grace, spec.stopSignal);
}
