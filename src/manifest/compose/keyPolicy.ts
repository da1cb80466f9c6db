/**
 * The key policy table: what the reader does with each Compose key (and a
 * few values) that Baton does not translate, and the reason it gives.
 * Ctx.policy and Ctx.unsupported (issues.ts) apply its rows; the reasons
 * shared by several rows come first.
 */

/** TASK_ADDRESS_REASON explains every refused address setting once, in the same words (each task has a network namespace of its own). */
const TASK_ADDRESS_REASON = "Baton gives each task an address of its own from its node's range of --cluster-cidr";
/** FIXED_ADDRESS_REASON: why an address cannot be pinned to a service. */
const FIXED_ADDRESS_REASON = `${TASK_ADDRESS_REASON}; a fixed address cannot follow a service's replicas from node to node (reach the service by name)`;
/** MAC_REASON: why a MAC address cannot be pinned to a service. */
const MAC_REASON = "Baton gives each task's interface a MAC address of its own; a fixed one cannot follow a service's replicas from node to node";
/** DRIVER_OPTS_REASON: why network driver options have nothing to act on. */
const DRIVER_OPTS_REASON = "Baton's network takes no driver options";
/** DNS_REASON: why a task's resolver settings are Baton's. */
const DNS_REASON = "each task resolves names through its node's resolver, which answers the cluster's names and forwards the others to the agent's --dns-upstream";
/** BUILDKIT_REASON: why a build key needs what the nodes' builder lacks. */
const BUILDKIT_REASON = "it needs BuildKit, and each node builds through its engine's API with the classic builder";
/** KeyPolicy says what the reader does with a key Compose knows but Baton does not translate, and why. */
export interface KeyPolicy {
  /** warn: ignoring the key changes neither what runs, nor what it can reach, nor what it keeps. unsupported: it would; refuse. */
  kind: 'warn' | 'unsupported';
  reason?: string;
}

const warn = (reason: string): KeyPolicy => ({ kind: 'warn', reason });
const unsupported = (reason?: string): KeyPolicy => (reason ? { kind: 'unsupported', reason } : { kind: 'unsupported' });

/**
 * COMPOSE_KEY_POLICY is the one table of Compose keys (and a few values) that
 * Baton does not translate: warn-only keys are dropped with a warning because
 * ignoring them changes neither what runs, nor what it can reach, nor what it
 * keeps; everything else is refused as "not supported by Baton yet" (a warning
 * with --ignore-unsupported). Rows are key patterns: `*` is any map key, `[]`
 * any list item, `=value` and `/proto` mark value-level rows. A key the schema
 * knows that has no row and no translation is refused too, so new spec keys
 * fail safe.
 */
export const COMPOSE_KEY_POLICY: Readonly<Record<string, KeyPolicy>> = {
  // top level
  version: warn('obsolete: Baton reads every file as the Compose Specification'),
  models: warn('definitions alone change nothing, and services cannot use models in Baton yet'),
  include: unsupported('Baton reads one file; merge the included files into it'),
  'volumes.*.driver': unsupported(
    'remote filesystems and volume plugins are not supported: a task may run on any node, and Baton keeps volumes with each node\'s "local" driver (bind a path mounted on every node with type: none, o: bind, device: <path>)',
  ),
  'volumes.*.driver_opts': unsupported('Baton reads the local driver\'s bind (type: none, o: bind, device: <absolute path>) and tmpfs (type: tmpfs, o: size=…,mode=…) options only'),
  'volumes.*.driver_opts.type=remote': unsupported(
    'remote filesystems are not supported: whichever node runs the task would mount the share itself, with no one to see it fail or to unmount it; mount it on the nodes and bind its path (type: none, o: bind, device: <path>)',
  ),
  'volumes.*.labels': warn('volume labels are metadata only'),
  // top-level networks (networks.ts): values that ask for what Baton does anyway pass without a row
  'networks.*.driver_opts': unsupported(DRIVER_OPTS_REASON),
  'networks.*.internal': unsupported("whether tasks reach beyond the cluster is decided per node (the agent's --egress), not per network"),
  'networks.*.enable_ipv4': unsupported(TASK_ADDRESS_REASON),
  'networks.*.enable_ipv6': unsupported(`${TASK_ADDRESS_REASON}, and task addresses are IPv4 only`),
  'networks.*.attachable': warn("only Baton's tasks join Baton's networks; another stack's services join one through `external: true`"),
  'networks.*.labels': warn('network labels are metadata only'),
  'networks.*.ipam.driver': unsupported(TASK_ADDRESS_REASON),
  'networks.*.ipam.config': unsupported(`${TASK_ADDRESS_REASON}, so a network's own subnet, ip_range, gateway or aux_addresses cannot be honoured`),
  'networks.*.ipam.options': unsupported(TASK_ADDRESS_REASON),

  // service level: warn only
  'services.*.attach': warn('it only decides whether `docker compose up` streams the service\'s logs'),
  'services.*.build': warn('the service has an `image`, which Baton runs (Compose pulls it too, and builds only when the pull fails); set `pull_policy: build` to build it'),
  // Only an architecture no node reports reaches this row: the others are placement constraints (services.ts).
  'services.*.platform': unsupported('Baton places a platform on the nodes that report it: amd64, arm64, arm/v7, arm/v6, 386, ppc64le, s390x, riscv64'),
  'services.*.build.cache_from': warn('each node builds with its own engine\'s layer cache'),
  'services.*.build.tags': warn('Baton tags a built image `<stack>_<service>:<build hash>` on each node that builds it'),
  'services.*.build.platforms': warn('each node builds the image for its own platform'),
  'services.*.build.provenance': warn('attestations need BuildKit; they change nothing that runs'),
  'services.*.build.sbom': warn('attestations need BuildKit; they change nothing that runs'),
  'services.*.build.shm_size': warn('builds get the engine\'s default /dev/shm'),
  'services.*.build.ulimits': warn('builds get the engine\'s default limits'),
  'services.*.build.isolation': warn('builds get the engine\'s default isolation (Linux engines have one)'),
  'services.*.build.ssh': unsupported(BUILDKIT_REASON),
  'services.*.build.secrets': unsupported(BUILDKIT_REASON),
  'services.*.build.cache_to': unsupported(BUILDKIT_REASON),
  'services.*.build.additional_contexts': unsupported(BUILDKIT_REASON),
  'services.*.build.entitlements': unsupported(BUILDKIT_REASON),
  'services.*.build.privileged': unsupported('a privileged build runs its RUN steps with every capability of the node'),
  'services.*.container_name': warn('Baton names each task\'s container itself'),
  'services.*.develop': warn('`docker compose watch` settings for local development'),
  'services.*.logging': warn('Baton reads task logs through the engine\'s default log driver'),
  'services.*.links=name': warn('services reach each other by name on the networks they share, so a link without an alias adds nothing'),
  'services.*.networks.*.priority': warn('a task has one address, on all its networks at once, so there is no order in which it joins them'),
  'services.*.networks.*.gw_priority': warn("a task has one address and one gateway, its node's, whatever networks it is on"),
  'services.*.restart+deploy.restart_policy': warn('`deploy.restart_policy` takes precedence, as in Swarm'),
  'services.*.stdin_open': warn('Baton tasks run detached; nothing attaches to stdin'),
  'services.*.tty': warn('Baton tasks run detached; nothing attaches to a terminal'),
  'services.*.deploy.endpoint_mode=dnsrr': warn("`<service>` resolves to the service's virtual IP, which balances over its ready tasks, and `tasks.<service>` to the tasks' own addresses, as dnsrr would"),
  'services.*.ports[].app_protocol': warn('an application-protocol hint only'),
  'services.*.volumes[].consistency': warn('mount consistency has no effect on Linux'),
  'services.*.volumes[].bind.create_host_path=false': warn('Baton creates a missing bind source as the short syntax does'),
  'services.*.volumes[].volume.labels': warn('volume labels are metadata only'),

  // service level: not supported yet (each changes what runs, what it can reach, or what it keeps)
  'services.*.annotations': unsupported('OCI annotations reach the runtime'),
  'services.*.blkio_config': unsupported(),
  'services.*.cgroup': unsupported(),
  'services.*.cgroup_parent': unsupported(),
  'services.*.cpu_count': unsupported('use `deploy.resources.limits.cpus`'),
  'services.*.cpu_percent': unsupported('use `deploy.resources.limits.cpus`'),
  'services.*.cpu_shares': unsupported('use `deploy.resources.limits.cpus`'),
  'services.*.cpu_quota': unsupported('use `deploy.resources.limits.cpus`'),
  'services.*.cpu_period': unsupported('use `deploy.resources.limits.cpus`'),
  'services.*.cpu_rt_period': unsupported(),
  'services.*.cpu_rt_runtime': unsupported(),
  'services.*.cpuset': unsupported(),
  'services.*.credential_spec': unsupported(),
  'services.*.device_cgroup_rules': unsupported(),
  'services.*.devices': unsupported(),
  'services.*.dns': unsupported(DNS_REASON),
  'services.*.dns_opt': unsupported(DNS_REASON),
  'services.*.dns_search': unsupported(DNS_REASON),
  'services.*.domainname': unsupported('it changes the name the container sees for itself'),
  'services.*.extends': unsupported('Baton reads one file; write the service out in full'),
  'services.*.external_links': unsupported('tasks reach services by name on the networks they share; Baton does not link a task to containers it does not run'),
  'services.*.gpus': unsupported(),
  'services.*.group_add': unsupported(),
  'services.*.ipc': unsupported(),
  'services.*.isolation': unsupported(),
  'services.*.label_file': unsupported('write the labels under `labels`'),
  'services.*.links': unsupported("a link's alias is seen by the linking service alone, and a network's names are the same for every task on it: give the alias with `networks.<name>.aliases`"),
  'services.*.mac_address': unsupported(MAC_REASON),
  'services.*.mem_swappiness': unsupported(),
  'services.*.memswap_limit': unsupported(),
  'services.*.models': unsupported(),
  'services.*.oom_kill_disable': unsupported(),
  'services.*.oom_score_adj': unsupported(),
  'services.*.pid': unsupported(),
  'services.*.post_start': unsupported(),
  'services.*.pre_stop': unsupported(),
  'services.*.privileged': unsupported(),
  'services.*.provider': unsupported(),
  'services.*.pull_refresh_after': unsupported(),
  'services.*.runtime': unsupported(),
  'services.*.security_opt': unsupported(),
  'services.*.shm_size': unsupported(),
  'services.*.storage_opt': unsupported(),
  'services.*.use_api_socket': unsupported(),
  'services.*.userns_mode': unsupported(),
  'services.*.uts': unsupported(),
  'services.*.volumes_from': unsupported(),
  'services.*.network_mode=service:': unsupported("each task has a network namespace of its own, and sharing another service's is not supported: reach that service by name, or run both programs in one service"),
  'services.*.network_mode=container:': unsupported("each task has a network namespace of its own; Baton does not join a container's"),
  'services.*.networks.*.ipv4_address': unsupported(FIXED_ADDRESS_REASON),
  'services.*.networks.*.ipv6_address': unsupported(FIXED_ADDRESS_REASON),
  'services.*.networks.*.link_local_ips': unsupported(FIXED_ADDRESS_REASON),
  'services.*.networks.*.mac_address': unsupported(MAC_REASON),
  'services.*.networks.*.driver_opts': unsupported(DRIVER_OPTS_REASON),
  'services.*.networks.*.interface_name': unsupported('a task has one network interface, which Baton names'),
  'services.*.pull_policy=refresh': unsupported('use always, missing or never'),
  'services.*.deploy.resources.reservations.generic_resources': unsupported(),
  'services.*.deploy.resources.reservations.devices': unsupported(),
  'services.*.ports[]/sctp': unsupported('Baton publishes TCP and UDP ports'),
  'services.*.ports[].published=range': unsupported(
    'a published range for one target port asks for any free port of it, chosen where the container starts; the routing mesh publishes one port, the same on every node, so name one (e.g. "8000:80")',
  ),
  'services.*.expose[]/sctp': unsupported('Baton exposes TCP and UDP ports'),
  'services.*.volumes[].type=cluster': unsupported(),
  'services.*.volumes[].type=npipe': unsupported(),
  'services.*.volumes[].type=image': unsupported(),
  'services.*.volumes[].bind.propagation': unsupported(),
  'services.*.volumes[].bind.recursive': unsupported(),
  'services.*.volumes[].bind.selinux': unsupported(),
  'services.*.volumes[].volume.nocopy': unsupported(),
  'services.*.volumes[].volume.subpath': unsupported(),
  'services.*.volumes[].image': unsupported(),
};
