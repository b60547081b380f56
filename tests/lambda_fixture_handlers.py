"""Lambda handlers for tests/test_local_lambda.py, each showing one runtime behaviour."""

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
