"""The lake handler in AWS Lambda: one synchronous Invoke per protocol request.

boto3 finds credentials, region and endpoint the usual way (profile, the
AWS_* variables, AWS_ENDPOINT_URL_LAMBDA for a local Lambda), so this module
only adds what lakemagic needs: timeouts that never re-run a query, the cost
of each call, and Lambda's failures as one sentence a notebook can show.
"""

from __future__ import annotations

import base64
import itertools
import json
import random
import re
import threading
import time
import urllib.parse

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectionError as BotoConnectionError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ReadTimeoutError,
)

from lakelambda import DEFAULT_FUNCTION_NAME
from lakelambda import protocol
from lakelambda.protocol import LAMBDA_ARCHITECTURES

from ..errors import EngineError, RetryableEngineError
from .base import Engine, LambdaFigures, Reply

# AWS Lambda on-demand prices in us-east-1, from https://aws.amazon.com/lambda/pricing/.
# Billed Duration already includes any billed Init phase, so nothing is added for cold starts.
PRICE_PER_GB_SECOND_USD = {"x86_64": 0.0000166667, "arm64": 0.0000133334}
PRICE_PER_REQUEST_USD = 0.20 / 1_000_000

# How much longer than the function's own timeout the client waits for an answer.
READ_TIMEOUT_MARGIN_S = 60
CONNECT_TIMEOUT_S = 10
# Retries only where the invocation cannot have run: Lambda throttled it, or it was never sent.
NOT_RUN_ERRORS = (EndpointConnectionError, ConnectTimeoutError)
RETRY_BASE_DELAY_S = 0.2
# The query of an S3 URL presigned with Signature Version 4 (a role's temporary credentials add the token).
PRESIGNED_QUERY = {"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders",
                   "X-Amz-Signature", "X-Amz-Security-Token"}

# Function errors that a second invocation would only repeat; any other (a crash, a timeout) may pass.
NOT_CURED_BY_RETRY = {"Function.ResponseSizeTooLarge", "Runtime.OutOfMemory"}
# Invocations that may run at once over the one client (a fan-out's tasks): its connection pool.
MAX_CONCURRENT_CALLS = 64

CREDENTIAL_ERRORS = {"UnrecognizedClientException", "ExpiredTokenException", "InvalidSignatureException"}
ACCESS_ERRORS = {"AccessDeniedException", "AccessDenied"}
TIMED_OUT = re.compile(r"Task timed out after ([\d.]+) seconds")
REQUEST_ID_PREFIX = re.compile(r"^RequestId: \S+ Error: ")


class LambdaEngine(Engine):
    """Runs each request in the Lambda function `function_name` and returns its answer.

    `timeout_s` is the function's configured timeout; the client waits that
    long plus `read_margin_s`, so it is Lambda, not the client, that ends a
    slow query. A request that may have reached the function is never sent
    again (an invocation cannot be cancelled, and a second one would run the
    query twice); a throttled one, or one that never connected, is retried
    up to `max_attempts` times in all, with jittered backoff.
    """

    name = "lambda"
    concurrency = 4  # parts of a result fetched at once: each call is its own container
    shares_files = False  # a path in its answer names a file of the function's, never one of the notebook's
    can_fan_out = True  # each invocation is a container of its own

    def __init__(
        self,
        function_name: str = DEFAULT_FUNCTION_NAME,
        region: str | None = None,
        profile: str | None = None,
        timeout_s: float = 900,
        max_attempts: int = 3,
        read_margin_s: float = READ_TIMEOUT_MARGIN_S,
        client=None,
        lake: str | None = None,
    ):
        self.function_name = function_name
        # The function's lake (its LAKEMAGIC_LAKE, s3://bucket[/prefix]): the one place a download URL may lead.
        self.lake = lake
        self.region = region
        self.profile = profile
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.read_timeout_s = timeout_s + read_margin_s
        # A boto3 Lambda client passed in is used as it is (its timeouts and retries are its maker's):
        # without one, one is made as _lambda() says.
        self._client = client
        self._client_lock = threading.Lock()
        self._signers: list | None = None  # S3 clients that presign nothing real: see _object_urls
        self._last_answer_at: float | None = None

    def call(self, request) -> Reply:
        """The handler's answer and Lambda's own figures for the call; EngineError if there is no answer."""
        response, body = self._invoke(json.dumps(protocol.encode(request)))
        self._last_answer_at = time.monotonic()
        answer = _json_or_none(body)
        if "FunctionError" in response:
            document = answer if isinstance(answer, dict) else {}
            error = EngineError if document.get("errorType") in NOT_CURED_BY_RETRY else RetryableEngineError
            raise error(self._function_error_sentence(document))
        report = _report(response.get("LogResult"))
        architecture = (answer.get("stats") or {}).get("architecture") if isinstance(answer, dict) else None
        figures = LambdaFigures(
            **report,
            request_id=response["ResponseMetadata"].get("RequestId"),
            cost_usd=_cost_usd(report, architecture),
        )
        return Reply(answer, figures)

    def seconds_since_answer(self) -> float | None:
        """How long ago the function last answered this engine (None: never), to guess whether a call starts a container."""
        return None if self._last_answer_at is None else time.monotonic() - self._last_answer_at

    def may_download(self, url: str, result_id: str) -> bool:
        """A download URL is read only if it is the stored result's object in the lake this engine was given,
        at the S3 endpoint this notebook's boto3 resolves for the function's region, presigned (SigV4)
        and nothing more; without a lake to check against, the result comes in parts through the function."""
        if self.lake is None:
            return False
        bucket, _, prefix = self.lake.removeprefix("s3://").partition("/")
        key = "/".join(filter(None, (prefix.strip("/"), protocol.RESULTS_FOLDER, f"{result_id}.parquet")))
        names = [name for name, _ in urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query, keep_blank_values=True)]
        if (url.split("?")[0] not in self._object_urls(bucket, key) or "#" in url
                or len(set(names)) != len(names) or not PRESIGNED_QUERY >= set(names) >= {"X-Amz-Signature"}):
            raise EngineError(f"the function's download URL is not result {result_id}'s object in the lake "
                              f"{self.lake}, presigned: {url[:300]!r}")
        return True

    def _object_urls(self, bucket: str, key: str) -> set[str]:
        """The URLs of an object as the function's S3 client presigns them (addressed either way), without
        their query: made here by botocore with keys of no account, so nothing is looked up or sent."""
        region = self._lambda().meta.region_name  # the function's: its own client presigns there
        with self._client_lock:
            if self._signers is None:
                session = boto3.Session(profile_name=self.profile, region_name=region,
                                        aws_access_key_id="unused", aws_secret_access_key="unused")
                self._signers = [session.client("s3", config=Config(signature_version="s3v4",
                                                                    s3={"addressing_style": style}))
                                 for style in ("auto", "virtual", "path")]
        return {s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}).split("?")[0]
                for s3 in self._signers}

    def _invoke(self, payload: str) -> tuple[dict, bytes]:
        for attempt in itertools.count(1):
            try:
                response = self._lambda().invoke(FunctionName=self.function_name, Payload=payload, LogType="Tail")
                return response, response["Payload"].read()
            except ClientError as error:
                throttled = error.response.get("Error", {}).get("Code") == "TooManyRequestsException"
                if not throttled:
                    raise EngineError(self._client_error_sentence(error)) from None
                if attempt == self.max_attempts:
                    raise RetryableEngineError(self._client_error_sentence(error)) from None
            except NOT_RUN_ERRORS as error:
                if attempt == self.max_attempts:
                    raise EngineError(self._botocore_error_sentence(error)) from None
            except (ConnectionClosedError, ReadTimeoutError) as error:  # may have run: never resent here
                raise RetryableEngineError(self._botocore_error_sentence(error)) from None
            except BotoCoreError as error:
                raise EngineError(self._botocore_error_sentence(error)) from None
            time.sleep(random.uniform(0, RETRY_BASE_DELAY_S * 2**attempt))

    def _lambda(self):
        """One client, made on first use: boto3 clients are thread-safe, sessions are not."""
        with self._client_lock:
            if self._client is None:
                # botocore itself never retries: it would resend after a read timeout,
                # running the query again (_invoke retries only what cannot have run).
                # TCP keepalive stops NAT gateways dropping a connection idle for minutes.
                config = Config(
                    read_timeout=self.read_timeout_s,
                    connect_timeout=CONNECT_TIMEOUT_S,
                    retries={"mode": "standard", "total_max_attempts": 1},
                    tcp_keepalive=True,
                    max_pool_connections=MAX_CONCURRENT_CALLS,
                )
                session = boto3.Session(profile_name=self.profile, region_name=self.region)
                self._client = session.client("lambda", config=config)
            return self._client

    def _function_error_sentence(self, document: dict) -> str:
        function = f"the Lambda function {self.function_name}"
        error_type = document.get("errorType", "Unhandled")
        message = REQUEST_ID_PREFIX.sub("", " ".join(str(document.get("errorMessage", "")).split()))
        timed_out = TIMED_OUT.search(message)
        if timed_out:
            return (
                f"{function} timed out after {float(timed_out[1]):g} s; make the query do less "
                "or raise the function's timeout (Lambda allows up to 900 s)"
            )
        if error_type == "Function.ResponseSizeTooLarge":
            return f"the answer of {function} was larger than Lambda's 6 MB response limit; ask for fewer rows per page"
        if error_type == "Runtime.OutOfMemory":
            return f"{function} ran out of memory; make the query do less or give the function more memory"
        if error_type == "Runtime.ExitError":
            return f"{function} crashed: {message}"
        return f"{function} failed: {error_type}: {message}"

    def _client_error_sentence(self, error: ClientError) -> str:
        code = error.response.get("Error", {}).get("Code", "")
        message = error.response.get("Error", {}).get("Message", "")
        function = f"the Lambda function {self.function_name}"
        if code == "TooManyRequestsException":
            return f"{function} is throttled: too many queries run at once even after retrying; try again in a moment"
        if code == "RequestEntityTooLargeException":
            return "the request is larger than Lambda's 6 MB limit: the SQL or its parameters are too big"
        if code == "ResourceNotFoundException":
            return (
                f"there is no Lambda function named {self.function_name!r} in region {self._client.meta.region_name}; "
                "set the right one with %config LakeMagic.function_name = '...'"
            )
        if code in ACCESS_ERRORS:
            return f"the AWS credentials in use may not invoke {function}: they need lambda:InvokeFunction on it"
        if code in CREDENTIAL_ERRORS:
            return (
                f"AWS rejected the credentials in use ({code}); refresh them or pick a profile "
                f"with lambda:InvokeFunction on {function}"
            )
        return f"invoking {function} failed: {code}: {message}"

    def _botocore_error_sentence(self, error: BotoCoreError) -> str:
        function = f"the Lambda function {self.function_name}"
        if isinstance(error, NoCredentialsError):
            return (
                "no AWS credentials were found; set a profile with %config LakeMagic.profile = '...' "
                f"or the AWS_* variables, for an identity with lambda:InvokeFunction on {function}"
            )
        if isinstance(error, NoRegionError):
            return "no AWS region is set; set one with %config LakeMagic.region = '...' or AWS_DEFAULT_REGION"
        if isinstance(error, ReadTimeoutError):
            return (
                f"{function} gave no answer within {self.read_timeout_s:g} s; "
                f"the connection may have dropped, or the function's timeout is longer than {self.timeout_s:g} s"
            )
        if isinstance(error, BotoConnectionError):
            return (
                f"could not reach the Lambda endpoint {self._client.meta.endpoint_url}; "
                "check the network connection, the region and AWS_ENDPOINT_URL_LAMBDA"
            )
        return f"invoking {function} failed: {error}"


def _json_or_none(body: bytes):
    try:
        return json.loads(body)
    except ValueError:
        return None


def _report(log_result: str | None) -> dict:
    """The figures of the REPORT line Lambda ends an invocation's log tail with (None if absent)."""
    log = base64.b64decode(log_result).decode(errors="replace") if log_result else ""
    line = next((line for line in reversed(log.splitlines()) if line.startswith("REPORT ")), "")

    def figure(label: str, kind: type):
        found = re.search(rf"{label}: ([\d.]+)", line)
        return kind(found[1]) if found else None

    return {
        "billed_ms": figure("Billed Duration", int),
        "memory_mb": figure("Memory Size", int),
        "max_memory_used_mb": figure("Max Memory Used", int),
        "init_ms": figure("Init Duration", float),
    }


def _cost_usd(report: dict, architecture: str | None) -> float | None:
    """An estimate at list price: GB-seconds billed, plus the request itself."""
    if report["billed_ms"] is None or report["memory_mb"] is None:
        return None
    known = set(LAMBDA_ARCHITECTURES.values())
    price = PRICE_PER_GB_SECOND_USD[architecture if architecture in known else "x86_64"]
    gb_seconds = report["billed_ms"] / 1000 * report["memory_mb"] / 1024
    return gb_seconds * price + PRICE_PER_REQUEST_USD
