"""Where query results are kept: the lake's results prefix, with a local copy in front.

A result must outlive the container that made it, so it goes to
`<lake>/_lakemagic/results/`, where any container finds it. On an S3 lake the
file is first written to local scratch, answered from there, and uploaded
once: writing Parquet to S3 through httpfs and reading it back costs several
round trips per query that the local copy avoids. Later pages served by the
same warm container read the local copy too.
"""

from __future__ import annotations

import os
import time

from .lake import Lake, s3_client, split_s3_path

RESULTS_PREFIX = "_lakemagic/results"
RESULT_MAX_AGE_SECONDS = 24 * 3600
# Lambda's /tmp is 512 MB by default; the local copies keep well inside it.
LOCAL_COPIES_MAX_BYTES = 256 * 1024 * 1024


class ResultStore:
    def __init__(self, lake: Lake, local_folder: str):
        self.lake = lake
        # On a local lake, results are written straight into the lake.
        self.local_folder = lake.path(RESULTS_PREFIX) if not lake.is_s3 else local_folder

    def prepare(self) -> None:
        """Make the local folder, and on a local lake drop results older than a day.

        On S3 a lifecycle rule on the results prefix does the expiry.
        """
        os.makedirs(self.local_folder, exist_ok=True)
        if not self.lake.is_s3:
            cutoff = time.time() - RESULT_MAX_AGE_SECONDS
            for entry in os.scandir(self.local_folder):
                if entry.is_file() and entry.stat().st_mtime < cutoff:
                    os.remove(entry.path)

    def local_path(self, result_id: str) -> str:
        return os.path.join(self.local_folder, f"{result_id}.parquet")

    def lake_path(self, result_id: str) -> str:
        return self.lake.path(RESULTS_PREFIX, f"{result_id}.parquet")

    def locate(self, result_id: str) -> str:
        """The local copy if this container has one, else the lake's."""
        local = self.local_path(result_id)
        return local if os.path.exists(local) else self.lake_path(result_id)

    def publish(self, result_id: str) -> None:
        """Make a result written locally visible to every container."""
        if not self.lake.is_s3:
            return
        self.lake.put(self.local_path(result_id), f"{RESULTS_PREFIX}/{result_id}.parquet")
        self._trim_local_copies()

    def read_range(self, path: str, start: int, length: int) -> bytes:
        if path.startswith("s3://"):
            bucket, key = split_s3_path(path)
            answer = s3_client().get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{start + length - 1}")
            return answer["Body"].read()
        with open(path, "rb") as stored:
            stored.seek(start)
            return stored.read(length)

    def _trim_local_copies(self) -> None:
        copies = sorted(os.scandir(self.local_folder), key=lambda entry: entry.stat().st_mtime, reverse=True)
        kept = 0
        for entry in copies:
            kept += entry.stat().st_size
            if kept > LOCAL_COPIES_MAX_BYTES:
                os.remove(entry.path)
