#!/usr/bin/env python3
"""An end-to-end encrypting Matrix client for Boardroom's encryption tests (matrix-nio[e2e]).

    $NIO_VENV/bin/python scripts/e2ee_client.py --url URL --user @alice:localhost \
        --password PW --bot @boardroom:localhost --store DIR [--room ROOM] \
        (--send TEXT [--thread ROOT] [--edit EVENT] [--expect TEXT] | --redact EVENT)

Logs in (its device, with its keys kept in DIR), creates an encrypted room with the bot
invited (or uses ROOM, which it has joined), waits for the bot to be there, then sends TEXT
encrypted (in the thread of ROOT, or as an edit of EVENT), or redacts EVENT. With EXPECT it
waits up to 60 s (--wait) for a message from the bot whose decrypted body contains it. Prints one
JSON line: {"room": ..., "event_id": ..., "reply": ..., "encrypted": true} and exits 0;
exits 1 when no such reply came (printing what it saw, and the bot's messages it could not
decrypt).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from nio import (
    AsyncClient, AsyncClientConfig, MegolmEvent, RoomMessageNotice, RoomMessageText,
)


async def run(args: argparse.Namespace) -> int:
    client = AsyncClient(
        args.url, args.user, device_id=args.device, store_path=args.store,
        config=AsyncClientConfig(encryption_enabled=True, store_sync_tokens=True),
    )
    got: list[tuple[str, bool]] = []
    undecryptable: list[str] = []

    async def on_text(room, event):
        if event.sender == args.bot:
            got.append((event.body, bool(event.decrypted)))

    async def on_megolm(room, event):
        if event.sender == args.bot:
            undecryptable.append(event.session_id)

    client.add_event_callback(on_text, RoomMessageText)
    client.add_event_callback(on_text, RoomMessageNotice)
    client.add_event_callback(on_megolm, MegolmEvent)
    try:
        login = await client.login(args.password, device_name="e2ee test client")
        if not getattr(login, "access_token", None):
            print(json.dumps({"error": f"login: {login}"}))
            return 1
        if client.should_upload_keys:
            await client.keys_upload()
        await client.sync(timeout=0, full_state=True)
        room = args.room
        if room is None:
            created = await client.room_create(invite=[args.bot], initial_state=[{
                "type": "m.room.encryption", "state_key": "",
                "content": {"algorithm": "m.megolm.v1.aes-sha2"},
            }])
            room = created.room_id
        def bot_joined() -> bool:
            r = client.rooms.get(room)
            return r is not None and args.bot in r.users

        deadline = time.time() + 30
        while not bot_joined():
            if time.time() > deadline:
                print(json.dumps({"error": "the bot did not join", "room": room}))
                return 1
            await client.sync(timeout=500)
        # The bot's device must be known before the room key is shared with it.
        if client.should_query_keys:
            await client.keys_query()
        if args.redact:
            await client.room_redact(room, args.redact, reason="test")
            print(json.dumps({"room": room, "redacted": args.redact}))
            return 0
        content = {"msgtype": "m.text", "body": args.send}
        if args.thread:
            content["m.relates_to"] = {
                "rel_type": "m.thread", "event_id": args.thread, "is_falling_back": True,
                "m.in_reply_to": {"event_id": args.thread},
            }
        if args.edit:
            content = {
                "msgtype": "m.text", "body": f"* {args.send}",
                "m.new_content": {"msgtype": "m.text", "body": args.send},
                "m.relates_to": {"rel_type": "m.replace", "event_id": args.edit},
            }
        sent = await client.room_send(room, "m.room.message", content,
                                      ignore_unverified_devices=True)
        event_id = getattr(sent, "event_id", None)
        if not args.expect:
            print(json.dumps({"room": room, "event_id": event_id}))
            return 0 if event_id else 1
        deadline = time.time() + args.wait
        while time.time() < deadline:
            await client.sync(timeout=1000)
            for body, decrypted in got:
                if args.expect in body:
                    print(json.dumps({"room": room, "event_id": event_id, "reply": body,
                                      "encrypted": decrypted}))
                    return 0
        print(json.dumps({"error": "no reply", "room": room, "seen": got,
                          "undecryptable": undecryptable}))
        return 1
    finally:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--bot", required=True)
    parser.add_argument("--store", required=True, help="directory for the client's keys")
    parser.add_argument("--device", default="E2EETEST",
                        help="the client's device id: the same one and store keep its keys")
    parser.add_argument("--room", help="an encrypted room both are in (default: a new one)")
    parser.add_argument("--send", help="text to send")
    parser.add_argument("--thread", help="send in the thread of this root event")
    parser.add_argument("--edit", help="send as an edit of this event")
    parser.add_argument("--redact", help="redact this event instead of sending")
    parser.add_argument("--expect", help="wait for a reply of the bot containing this")
    parser.add_argument("--wait", type=int, default=60, help="seconds to wait for it")
    sys.exit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
