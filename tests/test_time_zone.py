"""Every engine computes in UTC, whatever the notebook's own time zone.

The kernel engine merges fan-outs and serves results that came inline; it
must answer as one invocation of the handler does, which computes in UTC.
Each case runs in a kernel process of its own whose TZ is America/New_York
(DuckDB takes a new database's zone from it), against DuckDB computing in UTC
here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import duckdb
import pytest

from lakelambda.sql import quote_literal

# The last events are past midnight in UTC and still the evening before in New York.
EVENTS = ("SELECT range % 4 AS k, TIMESTAMPTZ '2024-03-01 20:00:00+00' + to_minutes(range) AS t, range AS n "
          "FROM range(300)")
MERGED = {
    "hour": "SELECT hour(max(t)) AS v FROM events",
    "date_trunc": "SELECT CAST(date_trunc('day', max(t)) AS VARCHAR) AS v FROM events",
    "strftime": "SELECT strftime(max(t), '%Y-%m-%d %H:%M') AS v FROM events",
    "dayofmonth": "SELECT dayofmonth(max(t)) AS v, dayofmonth(min(t)) AS w FROM events",
    "grouped": "SELECT hour(t) AS h, count(*) AS v FROM events GROUP BY ALL ORDER BY h",
}
KERNEL = r"""
import json, sys
from lakelambda.protocol import PageAnswer, QueryRequest, SortKey
from lakemagic import client
from lakemagic.decode import page_text
from lakemagic.engines.embedded import EmbeddedEngine
from lakemagic.fanout import runner

engine = EmbeddedEngine(sys.argv[1])
answers = {}
for name, sql in json.loads(sys.argv[2]).items():
    fanned = runner.run(engine, sql, {}, 50, (), 4, reuse=False)
    answers[name] = {"tasks": fanned.stats.fanout.tasks, "merged": fanned.to_dataframe().values.tolist(),
                     "single": client.run_query(engine, sql, reuse=False).to_dataframe().values.tolist()}
sql = "SELECT t, n FROM events"
inline = client.result_of(engine, sql, *client.call(engine, QueryRequest(sql, {}, 50), PageAnswer, sql))
derived = inline.derive((SortKey("t", True),), "hour(t) = 0")
profile = inline.profile("t")
answers["inline"] = {"held": inline.inline, "filtered": derived.total_rows,
                     "first": derived.to_dataframe()["n"].tolist()[:3], "min": profile.min, "max": profile.max,
                     "shown": page_text(derived.first_page.data, derived.columns, derived.first_page.row_count)[0][0]}
kept = client.run_query(engine, "SELECT t, n FROM events ORDER BY t DESC LIMIT 1000", reuse=False)
derived = kept.derive((SortKey("t", False),), "hour(t) = 0")
answers["in memory"] = {"page": type(kept.first_page).__name__, "shown": kept.first_page.text()[0][0],
                        "max": kept.profile("t").max, "filtered": derived.total_rows,
                        "page 2": kept.page(50, 1).text()[0][0]}
print(json.dumps(answers))
"""


@pytest.fixture(scope="module")
def answers(tmp_path_factory) -> dict:
    lake = tmp_path_factory.mktemp("time-zone-lake")
    duckdb.sql(f"COPY ({EVENTS}) TO {quote_literal(str(lake / 'events'))} (FORMAT parquet, PARTITION_BY (k))")
    environment = dict(os.environ, TZ="America/New_York")
    done = subprocess.run([sys.executable, "-c", KERNEL, str(lake), json.dumps(MERGED)], env=environment,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def in_utc(sql: str) -> list:
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(f"CREATE VIEW events AS {EVENTS}")
        return [list(row) for row in con.execute(sql).fetchall()]


@pytest.mark.parametrize("name", MERGED)
def test_a_fan_out_merges_times_in_utc_as_one_invocation_computes_them(answers, name):
    answer = answers[name]
    assert answer["tasks"] > 1  # it did fan out, and the kernel engine merged it
    assert answer["merged"] == answer["single"] == in_utc(MERGED[name])


def test_an_inline_result_is_sorted_filtered_profiled_and_shown_in_utc(answers):
    inline = answers["inline"]
    assert inline["held"]  # whole in its answer: the kernel engine sorted, filtered and profiled it
    assert inline["filtered"] == 60 and inline["first"] == [299, 298, 297]
    assert (inline["min"], inline["max"]) == ("2024-03-01 20:00:00+00", "2024-03-02 00:59:00+00")
    assert inline["shown"] == "2024-03-02 00:59:00+00"  # the table writes it as the engine computed it


def test_a_result_kept_in_memory_is_shown_profiled_and_filtered_in_utc(answers):
    kept = answers["in memory"]
    assert kept["page"] == "TextPage"  # kept by the embedded handler, its first page written with it
    assert kept["shown"] == kept["max"] == "2024-03-02 00:59:00+00"
    assert kept["filtered"] == 60 and kept["page 2"] == "2024-03-02 00:09:00+00"
