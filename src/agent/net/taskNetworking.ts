/**
 * TaskNetworking is the agent's side of a task's network namespace
 * (network mode bridge): its sandbox (the driver's pause container, which
 * holds the namespace while the task's containers come and go), its address
 * on the node's task network (NodeNetwork: the bridge, the veth, the address
 * kept in the data directory), and the node ports mapped into it (a `mode:
 * host` published port: <node address>:<published> → <task address>:<target>).
 *
 * Every call is idempotent, so the reconciler runs `prepare` before each
 * start of a task's container (the first one, and each restart in place): a
 * pause container that the engine stopped (an engine restart) is started
 * again and the same address plumbed into its new namespace.
 */
import type { Logger } from 'pino';
import type { Driver, SandboxDns, SandboxHandle } from '../driver.js';
import { NodeNetwork, type NodeNetworkOptions } from './nodeNetwork.js';
import { LABEL_PORTS, LABEL_SERVICE, LABEL_SLOT } from '../state.js';

export interface PreparedNetwork {
  sandbox: SandboxHandle;
  /** The task's address on this node's task network. */
  taskIP: string;
}

export interface HostPortMapping {
  hostPort: number;
  target: number;
  protocol: 'tcp' | 'udp';
  /** The port's host IP (a loopback one: api/hostIp.ts); absent: the node's address. */
  hostIP?: string;
}

export class TaskNetworking {
  private constructor(
    private readonly driver: Driver & Required<Pick<Driver, 'sandbox' | 'removeSandbox'>>,
    readonly node: NodeNetwork,
    private readonly log: Logger,
  ) {}

  /**
   * open makes the node's task network (its bridge and its mapping table);
   * undefined when the driver has no sandboxes (the simulated one, whose
   * tasks do not really listen): its tasks keep the node's network.
   */
  static async open(driver: Driver, opts: NodeNetworkOptions): Promise<TaskNetworking | undefined> {
    if (!driver.sandbox || !driver.removeSandbox) return undefined;
    const node = new NodeNetwork(opts);
    await node.start();
    return new TaskNetworking(driver as Driver & Required<Pick<Driver, 'sandbox' | 'removeSandbox'>>, node, opts.log);
  }

  /** prepare starts (or finds) a task's sandbox and plumbs its address into it. */
  async prepare(taskName: string, uid: string, labels: Record<string, string>, dns?: SandboxDns): Promise<PreparedNetwork> {
    // The sandbox carries the labels that find a task's containers (cluster, node, task), not those that count a service's.
    const own = Object.fromEntries(Object.entries(labels).filter(([k]) => k !== LABEL_SERVICE && k !== LABEL_SLOT && k !== LABEL_PORTS));
    const sandbox = await this.driver.sandbox(taskName, own, dns);
    const taskIP = await this.node.plumb(taskName, uid, sandbox.pid);
    return { sandbox, taskIP };
  }

  /** bridge: the name of the node's task bridge. */
  get bridge(): string {
    return this.node.bridge.name;
  }

  /** gateway: the node's own address on its task network (every task's gateway and resolver). */
  get gateway(): string {
    return this.node.gateway;
  }

  /** addressOf: the task's address, when it has one. */
  addressOf(taskName: string): string | undefined {
    return this.node.known(taskName);
  }

  /** mapPorts maps node ports into the task (its `mode: host` published ports), replacing what it had. */
  async mapPorts(taskName: string, ports: readonly HostPortMapping[]): Promise<void> {
    await this.node.setMappings(taskName, ports);
  }

  /** release removes a task's sandbox, its mappings, its veth and its address (the task is done or gone). */
  async release(taskName: string, uid: string | undefined): Promise<void> {
    try {
      await this.driver.removeSandbox(taskName);
    } catch (e) {
      // The address stays held until the sandbox is gone: another task must not take it while the namespace may still answer there.
      this.log.warn({ task: taskName, err: String(e) }, 'could not remove the task\'s sandbox yet; its address stays held');
      throw e;
    }
    await this.node.release(taskName, uid);
  }

  async close(): Promise<void> {
    await this.node.close();
  }
}
