"""Reading what a local trial reported: its stdout file and its termination file.

The trial wrapper (`nasop.local.trialwrap`) sends the trainer's stdout to `<folder>/.nasop/stdout`
and the trainer writes its final values to `<folder>/.nasop/termination-log` (the local stand-in
for a container's termination message). A reader keeps a byte offset, so each tick reads only
what is new, at most `MAX_READ_BYTES`; a reader rebuilt after a restart starts at 0 and, since
points are keyed, records nothing twice. The cluster's reader (`pod_output`) feeds the same
collector from a pod's log and status.
"""

from __future__ import annotations

import os

from nasop import results
from nasop.local.trialwrap import STDOUT
from nasop.results.collector import Collector, LineSplitter
from nasop.trials import local_markers
from nasop.trials.appdef import TERMINATION_FILE

MAX_READ_BYTES = 8 * 1024 * 1024  # per reader per tick: a flood is read over several ticks
TOO_LONG = f"line over {results.collector.MAX_LINE_BYTES // 1024} KiB"


def record_too_long(collector: Collector, splitter: LineSplitter) -> None:
    """Counts the lines the splitter skipped for their length among the collector's refusals."""
    if splitter.too_long:
        collector.rejected[TOO_LONG] += splitter.too_long
        splitter.too_long = 0


def add_termination(collector: Collector, message: str) -> None:
    """The final values of a termination message (or why it was refused) into the collector."""
    decoded = results.decode_final(message)
    if isinstance(decoded, str):
        collector.rejected[decoded] += 1
        return
    for member, entry in decoded.items():
        if member is not None and (collector.members is None or member not in collector.members):
            collector.rejected["member index not in this pack"] += 1
            continue
        if member is None and collector.members is not None:
            collector.rejected["member index from a lone trial"] += 1
            continue
        collector.add_final(member, entry["final"])
        if entry.get("lines") is not None:
            collector.add_printed(member, entry["lines"])
        if member is not None and entry.get("state") in ("completed", "failed", "stopped"):
            collector.ends.setdefault(member, (entry["state"], entry.get("reason", "")))


class LocalOutput:
    """The output of one local trial or pack, read incrementally from its marker folder."""

    def __init__(self, folder: str, collector: Collector) -> None:
        self.folder = local_markers.marker_dir(folder)
        self.collector = collector
        self.offset = 0
        self.splitter = LineSplitter()
        self.final_read = False

    def read(self) -> Collector:
        try:
            with open(os.path.join(self.folder, STDOUT), "rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read(MAX_READ_BYTES)
        except FileNotFoundError:
            chunk = b""
        self.offset += len(chunk)
        for line in self.splitter.feed(chunk):
            self.collector.feed_line(line)
        record_too_long(self.collector, self.splitter)
        if not self.final_read:
            try:
                with open(os.path.join(self.folder, TERMINATION_FILE), encoding="utf-8") as fh:
                    message = fh.read(results.MAX_MESSAGE_BYTES + 1)
            except (FileNotFoundError, UnicodeDecodeError):
                return self.collector
            if message:
                self.final_read = True
                add_termination(self.collector, message)
        return self.collector


__all__ = ["MAX_READ_BYTES", "LocalOutput", "add_termination", "record_too_long"]
