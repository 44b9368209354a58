"""A line the SDK cannot parse (a lone surrogate) gets a JSON-RPC parse error, not silence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import Process

from tests.proc import SERVER_CMD, STOP_TIMEOUT, clean_env
from tests.server.test_transport_stdio import SESSION_TIMEOUT, RawSession, json_rpc, server_env

pytestmark = pytest.mark.slow  # stdio server subprocesses

PARSE_ERROR = -32700


async def test_a_lone_surrogate_line_is_answered_with_a_parse_error(tmp_path: Path) -> None:
    errlog = tmp_path / "server.stderr"
    env = clean_env(tmp_path, **server_env(tmp_path))
    with errlog.open("wb") as err:
        process = await anyio.open_process(
            [*SERVER_CMD, "--simulate"], env=env, cwd=tmp_path, stderr=err
        )
    async with process:
        try:
            with anyio.fail_after(SESSION_TIMEOUT):
                session = RawSession(process)
                await session.initialize("surrogate-test")
                # json.dumps writes the lone surrogate as the escape \ud800
                refused = await session.request(
                    5, "tools/call", {"name": "list_models", "arguments": {"family": "\ud800"}}
                )
                # the server goes on serving after it
                listed = await session.request(6, "tools/list", {})
                await session.close_and_drain()
            with anyio.fail_after(STOP_TIMEOUT):
                code = await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                with anyio.move_on_after(STOP_TIMEOUT):
                    await process.wait()
    assert code == 0, errlog.read_text()
    assert refused["id"] == 5
    assert refused["error"]["code"] == PARSE_ERROR
    assert "surrogate" in refused["error"]["message"]
    assert listed["result"]["tools"]
    assert "refused a line from the client" in errlog.read_text()


# --- any unreadable line, with a call in flight ----------------------------------------

#: Deep enough that the standard library's recursive JSON parser gives up (RecursionError).
DEPTH = 5000
#: Each line the server cannot read, by what is wrong with it.
BAD_LINES: dict[str, bytes] = {
    "deeply nested": (
        b'{"jsonrpc":"2.0","id":"deep","method":"tools/call","params":{"name":"list_models",'
        b'"arguments":{"family":' + b"[" * DEPTH + b"]" * DEPTH + b"}}}"
    ),
    "nested just under the parser's limit": (
        b'{"jsonrpc":"2.0","id":"mid","method":"tools/call","params":{"name":"list_models",'
        b'"arguments":{"family":' + b"[" * 190 + b"]" * 190 + b"}}}"
    ),
    "deeply nested, unclosed": b"[" * DEPTH,
    "deeply nested objects": b'{"a":' * DEPTH + b"1" + b"}" * DEPTH,
    "huge": b"x" * (8 * 1024 * 1024),
    "binary": bytes(b for b in range(256) if b not in b"\r\n"),
    "not UTF-8": (
        b'{"jsonrpc":"2.0","id":"utf","method":"tools/list","params":{"x":"\xff\xfe\xc3"}}'
    ),
    "not JSON": b"hello, server",
    "lone surrogate, long": (
        b'{"jsonrpc":"2.0","id":"sur","method":"ping","params":{"a":"\\udfff","b":[['
        + b'"\\ud83d\\ude00",' * 100_000
        + b'"\\\\udc00"]]}}'
    ),
    "empty": b"",
}


class Conversation(RawSession):
    """A raw session that can leave a request in flight and collect its answer later."""

    def __init__(self, process: Process) -> None:
        super().__init__(process)
        self.answers: dict[object, dict[str, Any]] = {}
        self.refusals: list[dict[str, Any]] = []

    async def send_line(self, line: bytes) -> None:
        assert self._process.stdin is not None
        await self._process.stdin.send(line + b"\n")

    async def answer(self, id_: int | str) -> dict[str, Any]:
        """The response to ``id_``, reading (and keeping) whatever comes before it."""
        while id_ not in self.answers:
            line = await self._stdout.receive_until(b"\n", 16 * 1024 * 1024)
            self.lines.append(line)
            message = json_rpc(line)
            if "method" in message:
                continue
            if message.get("id") is None:
                self.refusals.append(message)
            else:
                self.answers[message["id"]] = message
        return self.answers.pop(id_)


async def test_no_line_ends_the_server_and_no_call_in_flight_is_lost(tmp_path: Path) -> None:
    errlog = tmp_path / "server.stderr"
    env = clean_env(tmp_path, **{**server_env(tmp_path), "GRAVITEX_SIMULATOR_SECONDS": "3"})
    with errlog.open("wb") as err:
        process = await anyio.open_process(
            [*SERVER_CMD, "--simulate"], env=env, cwd=tmp_path, stderr=err
        )
    async with process:
        try:
            with anyio.fail_after(SESSION_TIMEOUT):
                session = Conversation(process)
                await session.initialize("bad-lines-test")
                # A generation the server is still waiting on while the bad lines arrive.
                await session.send(
                    {
                        "id": 2,
                        "method": "tools/call",
                        "params": {
                            "name": "generate_video",
                            "arguments": {
                                "model": "sora-2",
                                "prompt": "A kite over a beach",
                                "wait_seconds": 30,
                            },
                        },
                    }
                )
                served: dict[str, dict[str, Any]] = {}
                for n, (kind, line) in enumerate(BAD_LINES.items(), start=100):
                    await session.send_line(line)
                    await session.send({"id": n, "method": "tools/list", "params": {}})
                    served[kind] = await session.answer(n)
                generated = await session.answer(2)
                await session.close_and_drain()
            with anyio.fail_after(STOP_TIMEOUT):
                code = await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                with anyio.move_on_after(STOP_TIMEOUT):
                    await process.wait()
    log = errlog.read_text(errors="replace")
    assert code == 0, log
    assert "Traceback" not in log, log
    for kind, answer in served.items():
        assert answer.get("result", {}).get("tools"), (kind, answer)
    assert generated["result"]["structuredContent"]["status"] == "succeeded", generated
    # Every line that was not a readable request got a parse error: with its id when the
    # id could be read safely, else with a null id.
    assert session.answers.pop("sur")["error"]["code"] == PARSE_ERROR
    assert session.answers.pop("utf").get("result", {}).get("tools")  # read as U+FFFD
    mid = session.answers.pop("mid")  # parsed: the tool refuses the argument
    assert mid["result"]["isError"], mid
    assert "family" in mid["result"]["content"][0]["text"], mid
    assert not session.answers, session.answers
    assert all(r["error"]["code"] == PARSE_ERROR for r in session.refusals), session.refusals
    assert len(session.refusals) == len(BAD_LINES) - 3
