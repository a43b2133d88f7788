"""A trial's final values in its termination message: at most 4 KiB, compressed when large.

Kubernetes keeps a container's termination message (``/dev/termination-log``, 4096 bytes) in
the pod's status once the container exits, written by nobody but the kubelet: the one record of a
trial's result that survives a lost log. ``NASOP1 {json}`` when it fits, else ``NASOP1Z `` +
base64(zlib(json)); the reader decompresses with a bound, so a hostile message costs nothing.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import zlib
from typing import Any

from nasop.results.lines import MAX_MEMBER, MAX_SEQ, MAX_STEP, PREFIX

TERMINATION_ENV = "NASOP_TERMINATION_LOG"  # the file a trial writes its final values to
MAX_MESSAGE_BYTES = 4096  # the kubelet's limit per container
MAX_DECODED_BYTES = 256 * 1024  # a decompressed message larger than this is refused
ZPREFIX = "NASOP1Z "

Final = dict[str, tuple[int, float]]  # metric -> (step, value)


def encode_final(
    final: Final, members: dict[int, dict[str, Any]] | None = None, lines: int | None = None
) -> str:
    """The termination message for a trial's final values (or each pack member's).

    ``members`` maps a member index to ``{"state", "reason", "final"}`` and, optionally,
    ``"lines"``. ``lines``: how many ``NASOP1`` lines the trial printed (its next ``seq``), so that
    the reader knows of lines lost after the last one it read (a log rotated at the end). Raises
    ValueError when even the compressed form is over 4 KiB (more metrics than a termination
    message holds).
    """
    body: dict[str, Any] = {"final": {k: [s, v] for k, (s, v) in final.items()}}
    if lines is not None:
        body["lines"] = lines
    if members is not None:
        body = {
            "members": {
                str(i): {
                    "state": m.get("state", ""),
                    "reason": " ".join(str(m.get("reason", "")).split())[:300],
                    "final": {k: [s, v] for k, (s, v) in m.get("final", {}).items()},
                    **({"lines": m["lines"]} if m.get("lines") is not None else {}),
                }
                for i, m in members.items()
            }
        }
    text = PREFIX + json.dumps(body, separators=(",", ":"))
    if len(text.encode()) <= MAX_MESSAGE_BYTES:
        return text
    packed = ZPREFIX + base64.b64encode(zlib.compress(text[len(PREFIX) :].encode(), 9)).decode()
    if len(packed) > MAX_MESSAGE_BYTES:
        raise ValueError(
            f"final values need {len(packed)} bytes compressed; a termination message holds "
            f"{MAX_MESSAGE_BYTES}"
        )
    return packed


def write_final(message: str, path: str | None = None) -> bool:
    """Writes the message to ``path`` (default: $NASOP_TERMINATION_LOG); False when none is set
    or it cannot be written (a trial run by hand has no termination log)."""
    path = path or os.environ.get(TERMINATION_ENV)
    if not path:
        return False
    try:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(message)
    except OSError:
        return False
    return True


def _body(message: str) -> dict[str, Any] | str:
    message = message.strip()
    if len(message.encode()) > MAX_MESSAGE_BYTES:
        return "termination message over 4 KiB"
    if message.startswith(ZPREFIX):
        try:
            raw = base64.b64decode(message[len(ZPREFIX) :], validate=True)
            inflate = zlib.decompressobj()
            text = inflate.decompress(raw, MAX_DECODED_BYTES)
            if inflate.unconsumed_tail or not inflate.eof:
                return "compressed termination message too large or cut"
        except (binascii.Error, zlib.error):
            return "compressed termination message is not valid"
    elif message.startswith(PREFIX):
        text = message[len(PREFIX) :].encode()
    else:
        return "no NASOP1 result in the termination message"
    try:
        body = json.loads(text)
    except ValueError:
        return "termination message is not JSON"
    return body if isinstance(body, dict) else "termination message is not a JSON object"


def _final(raw: Any) -> Final | str:
    if not isinstance(raw, dict):
        return "final is not an object"
    out: Final = {}
    for name, pair in raw.items():
        if not (isinstance(pair, list) and len(pair) == 2):
            return f"final {name} is not [step, value]"
        step, value = pair
        if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= MAX_STEP:
            return f"final {name} has no sane step"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"final {name} is not a number"
        if not math.isfinite(value):
            return f"final {name} is not finite"
        out[str(name)] = (step, float(value))
    return out


def _lines(entry: dict[str, Any]) -> dict[str, int] | str:
    """``{"lines": n}`` when the entry says how many lines were printed, ``{}`` when it does not."""
    if "lines" not in entry:
        return {}
    n = entry["lines"]
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_SEQ:
        return "lines is not a non-negative integer"
    return {"lines": n}


def decode_final(message: str) -> dict[int | None, dict[str, Any]] | str:
    """Final values by member (None: a lone trial), each ``{"final", "state", "reason"}`` and
    ``"lines"`` when the message says how many lines were printed; or the reason the message is
    refused."""
    body = _body(message)
    if isinstance(body, str):
        return body
    if "members" not in body:
        final, lines = _final(body.get("final")), _lines(body)
        if isinstance(final, str) or isinstance(lines, str):
            return final if isinstance(final, str) else str(lines)
        return {None: {"final": final, **lines}}
    members = body["members"]
    if not isinstance(members, dict):
        return "members is not an object"
    out: dict[int | None, dict[str, Any]] = {}
    for key, member in members.items():
        if not key.isdigit() or int(key) > MAX_MEMBER or not isinstance(member, dict):
            return "member index out of range"
        final, lines = _final(member.get("final", {})), _lines(member)
        if isinstance(final, str) or isinstance(lines, str):
            return final if isinstance(final, str) else str(lines)
        out[int(key)] = {
            "final": final,
            "state": str(member.get("state", "")),
            "reason": str(member.get("reason", ""))[:300],
            **lines,
        }
    return out


__all__ = [
    "MAX_MESSAGE_BYTES",
    "TERMINATION_ENV",
    "ZPREFIX",
    "decode_final",
    "encode_final",
    "write_final",
]
