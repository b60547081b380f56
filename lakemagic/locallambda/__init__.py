"""A local AWS Lambda: the real Invoke REST API in front of warm Python workers.

An unmodified boto3 Lambda client pointed at this server (``endpoint_url=`` or
``AWS_ENDPOINT_URL_LAMBDA``) invokes handlers the way AWS Lambda runs them, so
notebooks, tests and CI exercise the same client code path as production:

    spec = FunctionSpec("lakelambda.handler.handler", packages=LAKE_PACKAGES)  # imports as on Lambda
    with LocalLambda({"lakemagic": spec}) as local:
        boto3.client("lambda", endpoint_url=local.endpoint_url, ...).invoke(...)

`runtime` is what runs in a worker process, `layout` what it can import,
`pool` keeps each function's warm workers, `server` speaks HTTP (`events`
queues Event invocations, `connections` bounds the HTTP side), and
`command` is `lakemagic serve`, which runs one function.
"""

from .pool import FunctionSpec
from .server import SYNC_REQUEST_LIMIT_BYTES, SYNC_RESPONSE_LIMIT_BYTES, LocalLambda

__all__ = ["SYNC_REQUEST_LIMIT_BYTES", "SYNC_RESPONSE_LIMIT_BYTES", "FunctionSpec", "LocalLambda"]
