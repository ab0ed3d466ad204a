#!/usr/bin/env python3
"""Run a throwaway Synapse for Boardroom's integration tests and demo, and register users on it.

Run it with the Python of the venv that scripts/setup.sh builds:

    $VENV/bin/python scripts/synapse.py run --dir DIR --port PORT --server-name NAME \\
        --registration FILE [--registration FILE ...] --shared-secret SECRET
    $VENV/bin/python scripts/synapse.py register --url http://127.0.0.1:PORT \\
        --shared-secret SECRET --user alice --password P [--admin]
    $VENV/bin/python scripts/synapse.py clean --dir DIR [--all]
    $VENV/bin/python scripts/synapse.py clean --stale

`run` writes DIR/homeserver.yaml and DIR/log.config, then replaces itself with Synapse
(os.execv): the pid of the child the caller started IS Synapse; stop it with SIGTERM.
Running `run` again on the same DIR is a restart: same signing key, secrets and database.

The SQLite database goes to /dev/shm/boardroom-synapse-<hash of DIR>/ when /dev/shm is
writable (about 3x faster), else to DIR. `clean --dir DIR` removes that /dev/shm directory
(`--all`: DIR too); `clean --stale` removes those whose DIR no longer exists, which `run`
also does on every start. `run --database PATH` puts the database elsewhere (e.g. on disk
to keep it across reboots).

`register` uses only the standard library, so any python3 can run it.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import secrets
import shutil
import sys
import urllib.error
import urllib.request
from typing import NoReturn

SHM = "/dev/shm"
SHM_PREFIX = "boardroom-synapse-"
OWNER_FILE = "owner"  # in each /dev/shm directory: the DIR it belongs to

# Every rate limit a test user could hit, raised far out of reach.
UNLIMITED = {"per_second": 100000, "burst_count": 1000000}
RATE_LIMITS = {
    "rc_message": UNLIMITED,
    "rc_registration": UNLIMITED,
    "rc_registration_token_validity": UNLIMITED,
    "rc_login": {"address": UNLIMITED, "account": UNLIMITED, "failed_attempts": UNLIMITED},
    "rc_joins": {"local": UNLIMITED, "remote": UNLIMITED},
    "rc_joins_per_room": UNLIMITED,
    "rc_invites": {"per_room": UNLIMITED, "per_user": UNLIMITED, "per_issuer": UNLIMITED},
    "rc_third_party_invite": UNLIMITED,
    "rc_3pid_validation": UNLIMITED,
    "rc_room_creation": UNLIMITED,
    "rc_presence": {"per_user": UNLIMITED},
    "rc_admin_redaction": UNLIMITED,
    "rc_key_requests": UNLIMITED,
    "rc_media_create": UNLIMITED,
    "rc_delayed_event_mgmt": UNLIMITED,
    "rc_reports": UNLIMITED,
    "rc_user_directory": UNLIMITED,
    "rc_profile": UNLIMITED,
}


def die(msg: str) -> NoReturn:
    print(f"synapse.py: {msg}", file=sys.stderr)
    sys.exit(1)


def dump_yaml(data: dict, path: str, mode: int = 0o644) -> None:
    """Writes YAML (or JSON, which is YAML too, when PyYAML is missing) atomically."""
    try:
        import yaml

        text = yaml.safe_dump(data, default_flow_style=False, sort_keys=False)
    except ImportError:
        text = json.dumps(data, indent=2) + "\n"
    tmp = f"{path}.tmp{os.getpid()}"
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "w") as f:
        f.write(text)
    os.replace(tmp, path)


# ---- where the database lives --------------------------------------------------------


def shm_dir_for(hs_dir: str) -> str:
    digest = hashlib.sha1(os.path.abspath(hs_dir).encode()).hexdigest()[:12]
    return os.path.join(SHM, SHM_PREFIX + digest)


def shm_usable() -> bool:
    return os.path.isdir(SHM) and os.access(SHM, os.W_OK | os.X_OK)


def clean_stale() -> list[str]:
    """Removes /dev/shm databases whose homeserver directory is gone (a test that died)."""
    removed = []
    if not os.path.isdir(SHM):
        return removed
    for name in os.listdir(SHM):
        if not name.startswith(SHM_PREFIX):
            continue
        path = os.path.join(SHM, name)
        try:
            with open(os.path.join(path, OWNER_FILE)) as f:
                owner = f.read().strip()
        except OSError:
            continue  # not ours, or being created right now
        if owner and not os.path.isdir(owner):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def database_path(hs_dir: str) -> str:
    if shm_usable():
        shm = shm_dir_for(hs_dir)
        try:
            os.makedirs(shm, mode=0o700, exist_ok=True)
            with open(os.path.join(shm, OWNER_FILE), "w") as f:
                f.write(hs_dir + "\n")
            return os.path.join(shm, "homeserver.db")
        except OSError:
            pass
    return os.path.join(hs_dir, "homeserver.db")


# ---- run ------------------------------------------------------------------------------


def load_or_create_secrets(hs_dir: str) -> dict:
    path = os.path.join(hs_dir, "secrets.json")
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        pass
    data = {
        "macaroon_secret_key": secrets.token_urlsafe(32),
        "form_secret": secrets.token_urlsafe(32),
    }
    tmp = f"{path}.tmp{os.getpid()}"
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)
    return data


def ensure_signing_key(path: str) -> None:
    if os.path.exists(path):
        return
    from signedjson.key import generate_signing_key, write_signing_keys

    key = generate_signing_key("a_" + secrets.token_hex(2))
    tmp = f"{path}.tmp{os.getpid()}"
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        write_signing_keys(f, [key])
    os.replace(tmp, path)


def log_config(hs_dir: str) -> dict:
    """INFO and up to DIR/homeserver.log, WARNING and up also to stderr."""
    return {
        "version": 1,
        "formatters": {
            "precise": {
                "format": "%(asctime)s - %(name)s - %(lineno)d - %(levelname)s"
                " - %(request)s - %(message)s"
            }
        },
        "filters": {
            "context": {"()": "synapse.logging.context.LoggingContextFilter", "request": ""}
        },
        "handlers": {
            "file": {
                "class": "logging.FileHandler",
                "formatter": "precise",
                "filename": os.path.join(hs_dir, "homeserver.log"),
                "filters": ["context"],
                "encoding": "utf8",
            },
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "precise",
                "filters": ["context"],
                "level": "WARNING",
                "stream": "ext://sys.stderr",
            },
        },
        "loggers": {
            "synapse.storage.SQL": {"level": "WARNING"},
            "twisted": {"level": "WARNING"},
        },
        "root": {"level": "INFO", "handlers": ["file", "stderr"]},
        "disable_existing_loggers": False,
    }


def homeserver_config(args: argparse.Namespace, hs_dir: str, db: str) -> dict:
    secret_values = load_or_create_secrets(hs_dir)
    signing_key = os.path.join(hs_dir, f"{args.server_name}.signing.key")
    ensure_signing_key(signing_key)
    log_cfg = os.path.join(hs_dir, "log.config")
    dump_yaml(log_config(hs_dir), log_cfg)
    media = os.path.join(hs_dir, "media")
    os.makedirs(media, exist_ok=True)

    config = {
        "server_name": args.server_name,
        "pid_file": os.path.join(hs_dir, "homeserver.pid"),
        "listeners": [
            {
                "port": args.port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client"], "compress": False}],
            }
        ],
        "database": {"name": "sqlite3", "args": {"database": db}},
        "log_config": log_cfg,
        "media_store_path": media,
        "signing_key_path": signing_key,
        "registration_shared_secret": args.shared_secret,
        "enable_registration": False,
        "report_stats": False,
        "macaroon_secret_key": secret_values["macaroon_secret_key"],
        "form_secret": secret_values["form_secret"],
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        # No federation, but with one server name that never resolves (RFC 2606): a user
        # there is one whose homeserver cannot be reached, as the tests need.
        "federation_domain_whitelist": ["unreachable.invalid"],
        "serve_server_wellknown": False,
        "url_preview_enabled": False,
        "app_service_config_files": [os.path.abspath(f) for f in args.registration],
        "presence": {"enabled": True},
        "background_updates": {"sleep_enabled": False},
        # What an appservice's encrypting bot needs (Boardroom's `[encryption]`): to-device
        # messages, device lists and one-time-key counts in its transactions. Inert for a
        # registration that does not ask for them.
        "experimental_features": {
            "msc2409_to_device_messages_enabled": True,
            "msc3202_transaction_extensions": True,
        },
    }
    config.update(RATE_LIMITS)
    if args.default_room_version:
        config["default_room_version"] = args.default_room_version
    return config


def cmd_run(args: argparse.Namespace) -> None:
    hs_dir = os.path.abspath(args.dir)
    for reg in args.registration:
        if not os.path.isfile(reg):
            die(f"registration file not found: {reg}")
    os.makedirs(hs_dir, exist_ok=True)
    clean_stale()
    db = os.path.abspath(args.database) if args.database else database_path(hs_dir)
    os.makedirs(os.path.dirname(db), exist_ok=True)

    cfg = os.path.join(hs_dir, "homeserver.yaml")
    dump_yaml(homeserver_config(args, hs_dir, db), cfg, mode=0o600)  # holds secrets

    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "synapse.app.homeserver", "-c", cfg])


# ---- register ---------------------------------------------------------------------


def http_json(method: str, url: str, body: dict | None = None, token: str | None = None):
    """Returns (status, json body) for any HTTP answer; raises URLError when unreachable."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as err:
        raw = err.read()
        try:
            return err.code, json.loads(raw)
        except ValueError:
            return err.code, {"error": raw.decode(errors="replace")}


def login_user_id(base: str, user: str, password: str) -> str:
    """Logs in to learn the full user id (and check the password), then logs out."""
    status, body = http_json(
        "POST",
        f"{base}/_matrix/client/v3/login",
        {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user},
            "password": password,
            "initial_device_display_name": "synapse.py register",
        },
    )
    if status != 200:
        die(f"{user} exists but logging in with the given password failed: {status} {body}")
    http_json("POST", f"{base}/_matrix/client/v3/logout", {}, token=body["access_token"])
    return body["user_id"]


def cmd_register(args: argparse.Namespace) -> None:
    base = args.url.rstrip("/")
    endpoint = f"{base}/_synapse/admin/v1/register"
    try:
        status, body = http_json("GET", endpoint)
        if status != 200 or "nonce" not in body:
            die(f"GET {endpoint}: {status} {body}")
        nonce = body["nonce"]
        message = "\0".join(
            [nonce, args.user, args.password, "admin" if args.admin else "notadmin"]
        )
        mac = hmac.new(args.shared_secret.encode(), message.encode(), hashlib.sha1)
        status, body = http_json(
            "POST",
            endpoint,
            {
                "nonce": nonce,
                "username": args.user,
                "password": args.password,
                "admin": args.admin,
                "mac": mac.hexdigest(),
            },
        )
        if status == 200:
            print(body["user_id"])
        elif body.get("errcode") == "M_USER_IN_USE":
            print(login_user_id(base, args.user, args.password))
        else:
            die(f"registering {args.user}: {status} {body}")
    except urllib.error.URLError as err:
        die(f"cannot reach {base}: {err.reason}")


# ---- clean --------------------------------------------------------------------------


def cmd_clean(args: argparse.Namespace) -> None:
    if args.stale:
        for path in clean_stale():
            print(f"removed {path}")
    if args.dir:
        hs_dir = os.path.abspath(args.dir)
        shutil.rmtree(shm_dir_for(hs_dir), ignore_errors=True)
        if args.all:
            shutil.rmtree(hs_dir, ignore_errors=True)
    if not args.stale and not args.dir:
        die("clean: give --dir DIR or --stale")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="write the config into DIR and exec Synapse")
    run.add_argument("--dir", required=True, help="homeserver directory (created)")
    run.add_argument("--port", required=True, type=int, help="client port on 127.0.0.1")
    run.add_argument("--server-name", default="localhost")
    run.add_argument(
        "--registration", action="append", default=[], metavar="FILE",
        help="appservice registration YAML (repeatable)",
    )
    run.add_argument("--shared-secret", required=True, help="registration_shared_secret")
    run.add_argument("--database", help="SQLite path (default: /dev/shm, else DIR)")
    run.add_argument("--default-room-version", help="room version of new rooms (Synapse's default: 12)")
    run.set_defaults(func=cmd_run)

    reg = sub.add_parser("register", help="register a user with the shared secret")
    reg.add_argument("--url", required=True, help="e.g. http://127.0.0.1:8008")
    reg.add_argument("--shared-secret", required=True)
    reg.add_argument("--user", required=True, help="localpart")
    reg.add_argument("--password", required=True)
    reg.add_argument("--admin", action="store_true")
    reg.set_defaults(func=cmd_register)

    clean = sub.add_parser("clean", help="remove a homeserver's /dev/shm database")
    clean.add_argument("--dir", help="homeserver directory")
    clean.add_argument("--all", action="store_true", help="remove DIR as well")
    clean.add_argument("--stale", action="store_true", help="remove orphaned /dev/shm dirs")
    clean.set_defaults(func=cmd_clean)

    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
