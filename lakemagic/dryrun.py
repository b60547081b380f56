"""`%%lakesql --dry-run` and `LakeMagic.max_scan_bytes`: what a query would read and cost, before it runs.

The engine answers the handler's `estimate` operation (lakelambda/estimate.py)
from the lake's listings and Parquet footers: files, bytes and row groups to
read of each source's total, after partition pruning, row-group statistics and
column projection. Here they are totalled, the fan-out's plan gives the number
of invocations (the planner's own decision, from a listing: nothing runs), and
on Lambda the function's memory and a measured scan rate give the cost.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from lakelambda.database import MB_PER_VCPU
from lakelambda.protocol import LAMBDA_ARCHITECTURES, SourceEstimate, View

from . import client
from .catalog import human_size
from .engines import Engine
from .engines.aws_lambda import PRICE_PER_GB_SECOND_USD, PRICE_PER_REQUEST_USD
from .fanout import runner as fanout_runner
from .locallambda.s3proxy import REAL_S3

# The bytes of Parquet (compressed, as the estimate counts them) one vCPU of the function scans a second: the
# lower of what DuckDB decoded on one thread here (120-400 MB/s of a local lake; README, "The cost before the
# run") and what one S3 connection carries (AWS's 85 MB/s, the S3 model's). And what an invocation takes
# besides its scan: the model's first byte from S3.
SCAN_BYTES_PER_S_PER_VCPU = REAL_S3.bytes_per_s
INVOCATION_S = REAL_S3.first_byte_s
# Lambda's most vCPUs (at 10,240 MB).
MAX_VCPUS = 6


@dataclass(frozen=True)
class Reads:
    """What a query would read, summed over its sources (the engine's estimate)."""

    sources: tuple[SourceEstimate, ...]
    memory_mb: int | None  # the function's, where the engine is Lambda
    architecture: str

    def total(self, field: str) -> int:
        return sum(getattr(source, field) for source in self.sources)

    @property
    def bytes_read(self) -> int:
        return self.total("bytes_read")

    def line(self, note: str = " (an estimate from the files' footers; nothing ran)") -> str:
        """One line: `Reads 3 of 30 files, 4.1 MB of 130 MB, 6 of 60 row groups (an estimate ...).`"""
        if not self.sources:
            return "Reads no file of the lake."
        return (f"Reads {self.total('files_read'):,} of {self.total('files'):,} files, "
                f"{human_size(self.bytes_read)} of {human_size(self.total('bytes'))}, "
                f"{self.total('row_groups_read'):,} of {self.total('row_groups'):,} row groups{note}.")


def estimate(engine: Engine, sql: str, params: dict, views: tuple[View, ...]) -> Reads:
    """The engine's estimate of what `sql` would read: one call, in which nothing of the query runs."""
    answer, stats = client.estimate(engine, sql, params, views)
    return Reads(answer.sources, answer.memory_mb, stats.engine.architecture)


def refusal(reads: Reads, limit: int) -> str | None:
    """Why LakeMagic.max_scan_bytes = `limit` refuses a query that would read `reads`, or None."""
    if reads.bytes_read <= limit:
        return None
    widest = max(reads.sources, key=lambda source: source.bytes_read)
    return (f"this query would read about {human_size(reads.bytes_read)} ({reads.bytes_read:,} bytes; "
            f"{widest.files_read:,} of {widest.files:,} files of {widest.name}), more than "
            f"LakeMagic.max_scan_bytes allows ({human_size(limit)}). Narrow it (a filter on the partition keys, "
            "fewer columns), see what it reads with %%lakesql --dry-run, or lift the limit: "
            f"%config LakeMagic.max_scan_bytes = {_round_up(reads.bytes_read)} (0: no limit)")


def _round_up(count: int) -> int:
    """`count` rounded up to two significant figures: a limit to suggest."""
    step = 10 ** max(0, len(str(count)) - 2)
    return -(-count // step) * step


@dataclass(frozen=True)
class DryRun:
    """What `%%lakesql --dry-run` shows: the reads, the invocations they take and, on Lambda, their cost."""

    engine: str
    reads: Reads
    invocations: int | None  # None: the query runs in this kernel
    plan: str  # how it runs, in a sentence

    @property
    def gb_seconds(self) -> float | None:
        """The function's memory times the time the scan and the invocations take, where its memory is known."""
        memory = self.reads.memory_mb
        if memory is None or self.invocations is None:
            return None
        rate = SCAN_BYTES_PER_S_PER_VCPU * min(MAX_VCPUS, memory / MB_PER_VCPU)
        return memory / 1024 * (self.reads.bytes_read / rate + self.invocations * INVOCATION_S)

    @property
    def cost_usd(self) -> float | None:
        if self.gb_seconds is None or self.invocations is None:
            return None
        known = set(LAMBDA_ARCHITECTURES.values())
        price = PRICE_PER_GB_SECOND_USD[self.reads.architecture if self.reads.architecture in known else "x86_64"]
        return self.gb_seconds * price + self.invocations * PRICE_PER_REQUEST_USD

    def lines(self) -> list[str]:
        lines = [f"Dry run on the {self.engine} engine: nothing ran; the lake's listing and Parquet footers say",
                 self.reads.line(note=""), self.plan]
        if self.cost_usd is not None:
            lines.append(f"Costs about ${self.cost_usd:.7f}: {self.gb_seconds:.3f} GB-s at {self.reads.memory_mb:,} MB "
                         f"({self.reads.architecture or 'x86_64'}) and {self.invocations} requests at Lambda's "
                         f"list price, scanning {SCAN_BYTES_PER_S_PER_VCPU / 1e6:.0f} MB/s per vCPU.")
        return lines

    def __repr__(self) -> str:
        rows = [f"  {source.name}: {source.files_read:,}/{source.files:,} files, "
                f"{human_size(source.bytes_read)}/{human_size(source.bytes)}, "
                f"{source.row_groups_read:,}/{source.row_groups:,} row groups, "
                f"{source.rows_read:,}/{source.rows:,} rows" for source in self.reads.sources]
        first, *rest = self.lines()
        return "\n".join([first, *rows, *rest])

    def _repr_html_(self) -> str:
        cells = "".join(
            f"<tr><td class='lakemagic-name'>{html.escape(source.name)}</td>"
            + "".join(f"<td>{read}</td><td>{total}</td>" for read, total in (
                (f"{source.files_read:,}", f"{source.files:,}"),
                (human_size(source.bytes_read), human_size(source.bytes)),
                (f"{source.row_groups_read:,}", f"{source.row_groups:,}"),
                (f"{source.rows_read:,}", f"{source.rows:,}")))
            + "</tr>" for source in self.reads.sources)
        head = "".join(f"<th colspan='2'>{name}<br><small>to read · of</small></th>"
                       for name in ("files", "bytes", "row groups", "rows (at most)"))
        first, *rest = (html.escape(line) for line in self.lines())
        return (f"<div class='lakemagic-dryrun'><b>{first}</b>"
                f"<table class='lakemagic-dryrun-table' style='text-align:right'><thead><tr><th>source</th>{head}"
                f"</tr></thead><tbody>{cells}</tbody></table>"
                + "".join(f"<div>{line}</div>" for line in rest) + "</div>")


def dry_run(engine: Engine, sql: str, params: dict, views: tuple[View, ...], max_fanout: int) -> DryRun:
    """What `sql` would read, in how many invocations, at what cost; runs nothing (on Lambda the estimate's call,
    and for a query a fan-out could split, the listing the fan-out plans over)."""
    reads = estimate(engine, sql, params, views)
    if not engine.can_fan_out:
        return DryRun(engine.name, reads, None, "Runs in this kernel, as one query.")
    decision = fanout_runner.decide(engine, sql, views, max_fanout, params)
    if decision.plan is not None:
        tasks = len(decision.plan.tasks)
        return DryRun(engine.name, reads, 1 + tasks,
                      f"Fans out: 1 invocation lists {decision.table}, then {tasks} tasks read its files.")
    if decision.partitioned:  # listed, then run on one invocation
        return DryRun(engine.name, reads, 2, f"2 invocations: one lists {decision.table}, one runs the query "
                                             f"({decision.reason}).")
    return DryRun(engine.name, reads, 1, f"1 invocation ({decision.reason}).")
