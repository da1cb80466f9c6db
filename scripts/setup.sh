#!/usr/bin/env bash
# setup.sh prepares a machine (a developer's or CI's: Debian 12, root) to build
# and test Baton, because every machine starts bare and the project's own files
# must install what its tests need. Idempotent: a second run only checks.
#
#   1. npm dependencies (npm ci, skipped while node_modules matches the lock),
#      then `npm run build`;
#   2. a Docker engine: docker.io from Debian when missing, and a dockerd we
#      start ourselves (host networking only, no bridge/iptables) when none
#      answers -- a dockerd that already answers is never touched;
#   3. the test image baton-test/busybox:latest, imported from a root fs built
#      out of the static busybox (no registry is reachable, so nothing is pulled);
#   4. nftables, Debian's chromium for the dashboard's browser test, and etcd (etcd-server)
#      for the HA store's tests, which start their own members.
#
# Works without stdin and with CI=true.
set -euo pipefail

cd "$(dirname "$0")/.."

DOCKER=/usr/bin/docker
DOCKERD=/usr/sbin/dockerd
DOCKER_SOCK=/var/run/docker.sock
DOCKERD_LOG=/var/log/baton-dockerd.log
DOCKERD_PID=/run/baton-dockerd.pid
DOCKERD_DEADLINE_S=60
TEST_IMAGE=baton-test/busybox:latest
# Bump TEST_IMAGE_VERSION whenever the image recipe below changes: an image
# with another version is rebuilt.
TEST_IMAGE_VERSION=1

export DEBIAN_FRONTEND=noninteractive

log() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"
  else die "need root for: $*"
  fi
}

APT_UPDATED=0
apt_install() {
  if [ "$APT_UPDATED" -eq 0 ]; then
    log "apt-get update"
    as_root apt-get update -qq || die "apt-get update failed"
    APT_UPDATED=1
  fi
  log "apt-get install $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" </dev/null \
    || die "apt-get install $* failed"
}

# ---------------------------------------------------------------- npm

setup_node_deps() {
  command -v node >/dev/null 2>&1 || die "node is not installed (Node >= 20.19 is required)"
  command -v npm >/dev/null 2>&1 || die "npm is not installed"

  local lock stamp want
  if [ -f package-lock.json ]; then lock=package-lock.json; else lock=package.json; fi
  # The stamp covers the lock and the Node version (native modules such as
  # better-sqlite3 are built for one Node ABI).
  want="$(sha256sum "$lock" | cut -d' ' -f1) node-$(node -v)"
  stamp=node_modules/.baton-setup-stamp

  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    log "npm dependencies up to date"
  elif [ ! -f "$stamp" ] && [ -f node_modules/.package-lock.json ] \
      && [ ! "$lock" -nt node_modules/.package-lock.json ] \
      && npm ls --all >/dev/null 2>&1; then
    # Installed before this script kept a stamp, and npm agrees the tree is
    # complete: adopt it instead of reinstalling.
    log "npm dependencies already installed"
    printf '%s\n' "$want" >"$stamp"
  else
    if [ -f package-lock.json ]; then
      log "npm ci"
      npm ci --no-audit --no-fund </dev/null || die "npm ci failed"
    else
      log "npm install"
      npm install --no-audit --no-fund </dev/null || die "npm install failed"
    fi
    printf '%s\n' "$want" >"$stamp"
  fi

  log "npm run build"
  npm run build --silent </dev/null || die "npm run build failed"
}

# ---------------------------------------------------------------- docker

engine_answers() {
  if [ -x "$DOCKER" ] && timeout 15 "$DOCKER" info >/dev/null 2>&1; then
    return 0
  fi
  [ -S "$DOCKER_SOCK" ] && [ "$(timeout 5 curl -fsS --unix-socket "$DOCKER_SOCK" http://localhost/_ping 2>/dev/null)" = "OK" ]
}

# our_dockerd_pid prints the pid of a dockerd this script started earlier, if it still runs.
our_dockerd_pid() {
  local pid
  [ -f "$DOCKERD_PID" ] || return 1
  pid="$(cat "$DOCKERD_PID" 2>/dev/null || true)"
  [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
  grep -q dockerd "/proc/$pid/cmdline" 2>/dev/null || return 1
  printf '%s\n' "$pid"
}

setup_docker() {
  if engine_answers; then
    log "docker engine answers"
    [ -x "$DOCKER" ] || apt_install docker.io
    return 0
  fi

  if [ ! -x "$DOCKERD" ] || [ ! -x "$DOCKER" ]; then
    apt_install docker.io
    [ -x "$DOCKERD" ] || die "docker.io installed but $DOCKERD is missing"
    # A package install may have started an engine (where an init system runs).
    if engine_answers; then log "docker engine answers"; return 0; fi
  fi

  local pid
  if pid="$(our_dockerd_pid)"; then
    log "dockerd (pid $pid) is running but does not answer yet; waiting"
  else
    log "starting dockerd (log $DOCKERD_LOG)"
    as_root mkdir -p "$(dirname "$DOCKERD_LOG")" "$(dirname "$DOCKERD_PID")"
    # setsid + nohup: dockerd outlives this script and its terminal/session.
    setsid nohup "$DOCKERD" --bridge=none --iptables=false --ip6tables=false \
      >>"$DOCKERD_LOG" 2>&1 </dev/null &
    pid=$!
    printf '%s\n' "$pid" >"$DOCKERD_PID"
  fi

  local deadline=$((SECONDS + DOCKERD_DEADLINE_S))
  until engine_answers; do
    if [ ! -d "/proc/$pid" ]; then
      tail -n 20 "$DOCKERD_LOG" >&2 || true
      die "dockerd (pid $pid) exited; see $DOCKERD_LOG"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 20 "$DOCKERD_LOG" >&2 || true
      die "dockerd (pid $pid) did not answer within ${DOCKERD_DEADLINE_S}s; see $DOCKERD_LOG"
    fi
    sleep 0.5
  done
  log "docker engine answers (dockerd pid $pid)"
}

# ---------------------------------------------------------------- test image

setup_busybox() {
  if dpkg -s busybox-static 2>/dev/null | grep -q '^Status: install ok installed'; then
    return 0
  fi
  apt_install busybox-static
  dpkg -s busybox-static 2>/dev/null | grep -q '^Status: install ok installed' || die "busybox-static did not install"
}

setup_test_image() {
  local have
  have="$("$DOCKER" image inspect -f '{{ index .Config.Labels "baton.testimage" }}' "$TEST_IMAGE" 2>/dev/null || true)"
  if [ "$have" = "$TEST_IMAGE_VERSION" ]; then
    log "test image $TEST_IMAGE (version $TEST_IMAGE_VERSION) present"
    return 0
  fi

  setup_busybox
  [ -x /bin/busybox ] || die "/bin/busybox is missing after installing busybox-static"

  log "building test image $TEST_IMAGE (version $TEST_IMAGE_VERSION)"
  local tmp root old
  tmp="$(mktemp -d)"
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" EXIT
  root="$tmp/rootfs"
  mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/www" "$root/root" "$root/usr" \
    "$root/proc" "$root/sys" "$root/dev" "$root/var"
  chmod 1777 "$root/tmp"
  cp /bin/busybox "$root/bin/busybox"
  local applet
  for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] && continue
    ln -sf busybox "$root/bin/$applet"
  done
  # Merged /usr layout: every applet is reachable under the usual paths.
  ln -s bin "$root/sbin"
  ln -s ../bin "$root/usr/bin"
  ln -s ../bin "$root/usr/sbin"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\nnogroup:x:65534:\n' >"$root/etc/group"
  printf '<!doctype html>\n<title>baton test</title>\n<p>baton test image</p>\n' >"$root/www/index.html"

  old="$("$DOCKER" image inspect -f '{{.Id}}' "$TEST_IMAGE" 2>/dev/null || true)"
  tar --numeric-owner --owner=0 --group=0 -C "$root" -cf - . \
    | "$DOCKER" import \
        --change "LABEL baton.testimage=$TEST_IMAGE_VERSION" \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["/bin/sh"]' \
        - "$TEST_IMAGE" >/dev/null \
    || die "docker import of $TEST_IMAGE failed"
  if [ -n "$old" ]; then
    "$DOCKER" image rm "$old" >/dev/null 2>&1 || true
  fi
  rm -rf "$tmp"
  trap - EXIT
  have="$("$DOCKER" image inspect -f '{{ index .Config.Labels "baton.testimage" }}' "$TEST_IMAGE" 2>/dev/null || true)"
  [ "$have" = "$TEST_IMAGE_VERSION" ] || die "test image $TEST_IMAGE was not created"
  log "test image $TEST_IMAGE built"
}

# nftables: the routing mesh's kernel fast path (the mesh falls back to its userspace proxy without it).
setup_nft() {
  if [ -x /usr/sbin/nft ]; then log "nftables present"; else
    apt_install nftables
    [ -x /usr/sbin/nft ] || die "nftables installed but /usr/sbin/nft is missing"
  fi
  # conntrack: the mesh deletes the UDP flows of an endpoint that left (net/conntrack.ts).
  if [ -x /usr/sbin/conntrack ]; then log "conntrack present"; else
    apt_install conntrack
    [ -x /usr/sbin/conntrack ] || die "conntrack installed but /usr/sbin/conntrack is missing"
  fi
}

# etcd: the HA store's backend; the store and HA tests start their own members on loopback ports.
setup_etcd() {
  if [ -x /usr/bin/etcd ]; then log "etcd present"; return 0; fi
  apt_install etcd-server
  [ -x /usr/bin/etcd ] || die "etcd-server installed but /usr/bin/etcd is missing"
}

# chromium: the dashboard's headless-browser test (test/e2e/dashboard.test.ts)
# drives Debian's build through playwright-core (no browser download).
setup_chromium() {
  if [ -x /usr/bin/chromium ]; then log "chromium present"; return 0; fi
  apt_install chromium
  [ -x /usr/bin/chromium ] || die "chromium installed but /usr/bin/chromium is missing"
}

# tmux and zsh: the shell completion and exec tests type into real bash and
# zsh in a tmux terminal; prometheus (with promtool): the discovery test
# scrapes through http_sd_configs and checks the exposition format;
# docker-registry, htpasswd and openssl: the private registry test runs a
# real registry (distribution 2.8) with TLS and htpasswd on a loopback port;
# haproxy: agents hand it the published ports of least_conn and PROXY
# protocol services (the mesh and haproxy tests), and bench:mesh's peer.
setup_tools() {
  local bin pkg
  for pair in /usr/bin/tmux:tmux /usr/bin/zsh:zsh /usr/bin/prometheus:prometheus /usr/bin/promtool:prometheus /usr/bin/docker-registry:docker-registry /usr/bin/htpasswd:apache2-utils /usr/bin/openssl:openssl /usr/sbin/haproxy:haproxy; do
    bin="${pair%%:*}"; pkg="${pair#*:}"
    if [ -x "$bin" ]; then log "$pkg present ($bin)"; continue; fi
    apt_install "$pkg"
    [ -x "$bin" ] || die "$pkg installed but $bin is missing"
  done
}

setup_node_deps
setup_docker
setup_test_image
setup_nft
setup_chromium
setup_etcd
setup_tools
log "done"
