#!/usr/bin/env bash
# Runs every test: unit tests, guest SDK tests, and the end-to-end tests that
# drive the real binary with real peers (SIPp, RabbitMQ, HTTP receivers).
# Installs the peers first when they are missing (Debian packages), and the
# wasm32-wasip2 Rust target the route modules are built for.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then
    SUDO="sudo -n"
fi

missing=()
command -v sipp >/dev/null 2>&1 || missing+=(sip-tester)              # SIPp
command -v rabbitmq-server >/dev/null 2>&1 \
    || [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || missing+=(rabbitmq-server)
if [ ${#missing[@]} -gt 0 ]; then
    echo "tests/run.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# sipvicious (svwar, svcrack) tries the server as an attacker would (tests/e2e/scan.rs).
if ! command -v sipvicious_svwar >/dev/null 2>&1; then
    echo "tests/run.sh: installing sipvicious"
    python3 -m pip install --quiet --disable-pip-version-check sipvicious==0.3.8
fi
# RabbitMQ tests start their own broker on private ports (no init system).
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    rustup target add wasm32-wasip2
fi

exec cargo test --workspace "$@"
