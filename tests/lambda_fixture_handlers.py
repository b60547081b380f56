"""Lambda handlers for tests/test_local_lambda.py, each showing one runtime behaviour, and for
tests/test_fanout_failures.py, the lake's handler misbehaving on purpose."""

import hashlib
import os
import time
from pathlib import Path

# Read at import time: proves the function's environment is set before the import.
SETTING_AT_IMPORT = os.environ.get("LAKEMAGIC_TEST_SETTING")

_cold = True


def _environment() -> dict:
    """This execution environment's pid, and whether this is its first invocation."""
    global _cold
    report = {"pid": os.getpid(), "cold": _cold}
    _cold = False
    return report


def echo(event, context):
    return event


def behave(event, context):
    """Do what the event asks, in this order: print, sleep, raise, exit; then report the environment."""
    if "print" in event:
        print(event["print"])
    if "sleep" in event:
        time.sleep(event["sleep"])
    if "raise" in event:
        raise ValueError(event["raise"])
    if "exit" in event:
        os._exit(event["exit"])
    return _environment()


def big_response(event, context):
    """A JSON string of exactly event["bytes"] bytes once serialized (quotes included)."""
    return "x" * (event["bytes"] - 2)


def unserializable(event, context):
    return {"values": {1, 2}}


def write_file(event, context):
    Path(event["path"]).write_text(event["text"])


def record(event, context):
    """Append the event's name to the file it names (one line per run), then sleep, then fail if asked."""
    with open(event["path"], "a") as runs:
        runs.write(event["name"] + "\n")
    time.sleep(event.get("sleep", 0))
    if event.get("fail"):
        raise RuntimeError("failing on purpose")
    return event["name"]


def describe(event, context):
    """The context and environment the handler sees, and the remaining time twice."""
    first = context.get_remaining_time_in_millis()
    time.sleep(0.05)
    return {
        "context": {
            name: getattr(context, name)
            for name in (
                "function_name", "function_version", "invoked_function_arn", "memory_limit_in_mb",
                "aws_request_id", "log_group_name", "log_stream_name",
            )
        },
        "remaining_ms": [first, context.get_remaining_time_in_millis()],
        "env": {name: os.environ.get(name) for name in event.get("env", [])},
        "setting_at_import": SETTING_AT_IMPORT,
    }


# Where crash_once_per_task keeps a marker of each task it has crashed on: a folder the test owns.
CRASH_MARKERS_ENV = "LAKEMAGIC_TEST_CRASH_MARKERS"


def crash_once_per_task(event, context):
    """The lake's handler, except that the first time it is given a fan-out task (known by its files)
    the worker process exits instead, as a crashed container would. The marker of a crashed task is a
    file in $LAKEMAGIC_TEST_CRASH_MARKERS, created exclusively, so it holds across fresh workers and
    only one invocation of a task ever crashes; the next one is answered as usual."""
    if isinstance(event, dict) and event.get("op") == "task":
        task = hashlib.sha256("\n".join(sorted(map(str, event.get("files", [])))).encode()).hexdigest()[:16]
        try:
            (Path(os.environ[CRASH_MARKERS_ENV]) / task).touch(exist_ok=False)
        except FileExistsError:
            pass
        else:
            os._exit(3)
    from lakelambda.handler import handler  # imported here: the other handlers do not need the lake's

    return handler(event, context)


def lake_and_imports(event, context):
    """The lake's handler's answer, and what the worker had imported and could import by then."""
    import importlib.util
    import sys

    from lakelambda.handler import handler

    answer = handler(event, context)
    files = {name: getattr(importlib.util.find_spec(name), "origin", None) for name in ("duckdb", "boto3", "lakelambda")}
    return {"answer": answer, "path": sys.path, "files": files,
            "imported": sorted(name for name in ("pandas", "boto3") if name in sys.modules),
            "pandas_importable": importlib.util.find_spec("pandas") is not None}
