"""The one way deploy and destroy reach AWS: boto3 clients whose failures come back as one sentence.

Every boto3 and botocore call of lakedeploy is made here, and every
exception they raise becomes a DeployError here. An API call's failure is
worded in one place, `_sentences`: an access denial names the permission
that is missing, refused or missing credentials say how to fix them, anything
else names the action and the resource. Failures before any call (no such
profile, no region, no credentials) are worded in `_session` and `_clients`.
The other modules say what to call; this one knows how AWS fails.

Callers may hand in boto3 clients, or a boto3 Session, the way s3transfer's
TransferManager takes its client; `Aws.connect` makes them the way the
command line does, from --region, --profile and boto3's usual chain.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from contextlib import contextmanager

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
    WaiterError,
)

from .errors import DeployError

SERVICES = ("s3", "iam", "lambda", "logs", "sts")
CLIENT_CONFIG = Config(retries={"max_attempts": 8, "mode": "standard"}, connect_timeout=10, read_timeout=300)
NO_CREDENTIALS = ("no AWS credentials found: set AWS_PROFILE (or pass --profile), or AWS_ACCESS_KEY_ID and "
                  "AWS_SECRET_ACCESS_KEY, or run `aws configure` / `aws sso login`")
CREDENTIALS_REFUSED = {"InvalidClientTokenId", "UnrecognizedClientException", "SignatureDoesNotMatch", "ExpiredToken",
                       "ExpiredTokenException", "InvalidAccessKeyId", "AuthFailure", "InvalidToken"}
ACCESS_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "403", "Forbidden"}
# IAM action names where they are not "<service>:<OperationName>".
_ACTIONS = {
    "head_bucket": "s3:ListBucket", "list_objects_v2": "s3:ListBucket", "head_object": "s3:GetObject",
    "get_bucket_lifecycle_configuration": "s3:GetLifecycleConfiguration",
    "put_bucket_lifecycle_configuration": "s3:PutLifecycleConfiguration",
    "delete_bucket_lifecycle": "s3:PutLifecycleConfiguration", "delete_objects": "s3:DeleteObject",
}
# What Lambda says while a role, or its policy's latest change, has not reached it yet.
_ROLE_NOT_READY = ("cannot be assumed", "does not have permissions to call CreateNetworkInterface")
_NO_SUCH_BUCKET = ("404", "NoSuchBucket", "NotFound")
_BUCKET_ELSEWHERE = ("301", "PermanentRedirect")


class Aws:
    """boto3 clients for one account and region (s3, iam, lam, logs, sts), whose failures come back as sentences.

    Clients given are used as they are; the rest come from `session`
    (boto3's default one if there is none).
    """

    def __init__(self, session: boto3.Session | None = None, clients: Mapping[str, object] | None = None):
        clients = dict(clients or {})
        missing = [name for name in SERVICES if name not in clients]
        if missing:
            clients.update(_clients(session or _session(None, None), missing))
        self.s3, self.iam, self.lam, self.logs, self.sts = (clients[name] for name in SERVICES)
        self.region = self.lam.meta.region_name
        self.partition = self.lam.meta.partition
        self.identity = "the AWS identity in use"
        self.account = None

    @classmethod
    def connect(cls, region: str | None, profile: str | None) -> "Aws":
        """As the command line does: the profile's or the environment's credentials and region, unless given."""
        return cls(_session(region, profile))

    def whoami(self) -> str:
        answer = self.call(self.sts, "get_caller_identity", "*")
        self.identity, self.account = answer["Arn"], answer["Account"]
        return self.account

    def call(self, client, operation: str, resource: str, absent: tuple[str, ...] = (), **parameters):
        """client.operation(**parameters); None if AWS answers with one of the `absent` codes."""
        return self.call_or_code(client, operation, resource, absent, **parameters)[0]

    def call_or_code(self, client, operation: str, resource: str, codes, **parameters) -> tuple[dict | None, str | None]:
        """(the answer, None), or (None, the code) when AWS answers with one of `codes`."""
        with self._sentences(client, operation, resource):
            try:
                return getattr(client, operation)(**parameters), None
            except ClientError as error:
                if _code(error) in codes:
                    return None, _code(error)
                raise

    def bucket_region(self, bucket: str, resource: str) -> str | None:
        """The region the bucket is in, as S3 tells it; None if there is no such bucket."""
        with self._sentences(self.s3, "head_bucket", resource):
            try:
                answer = self.s3.head_bucket(Bucket=bucket)
            except ClientError as error:
                if _code(error) in _NO_SUCH_BUCKET:
                    return None
                if _code(error) not in _BUCKET_ELSEWHERE or not _bucket_region_header(error.response):
                    raise
                answer = error.response
        return _bucket_region_header(answer) or self.region

    def call_assuming_role(self, operation: str, resource: str, role_arn: str, wait_s: float, out, **parameters):
        """A Lambda call naming a role, retried with backoff while Lambda cannot use the role or its policy yet.

        IAM is eventually consistent: a new role, or a policy's new EC2
        actions for a function in a VPC, reach Lambda after a few seconds.
        """
        deadline = time.monotonic() + wait_s
        delay, told = 1.0, False
        while True:
            with self._sentences(self.lam, operation, resource):
                try:
                    return getattr(self.lam, operation)(**parameters)
                except ClientError as error:
                    details = error.response.get("Error", {})
                    message = details.get("Message", "")
                    if not (details.get("Code") == "InvalidParameterValueException"
                            and any(words in message for words in _ROLE_NOT_READY)):
                        raise
            if time.monotonic() + delay > deadline:
                raise DeployError(f"Lambda still cannot use the role {role_arn} after {wait_s:.0f} s "
                                  f"({message.rstrip('.')}); run deploy again in a minute (IAM changes take a "
                                  "while to spread)")
            if not told:
                out("waiting for the role and its policy to reach Lambda (IAM takes a few seconds to propagate)...")
                told = True
            time.sleep(delay)
            delay = min(delay * 2, 10.0)

    def wait(self, waiter: str, function_name: str) -> None:
        """Until the function is Active (after create) or its last update is done; fails with Lambda's reason."""
        with self._sentences(self.lam, "get_function", function_name):
            try:
                self.lam.get_waiter(waiter).wait(FunctionName=function_name,
                                                 WaiterConfig={"Delay": 2, "MaxAttempts": 300})
            except WaiterError as error:
                last = getattr(error, "last_response", None) or {}
                reason = (last.get("StateReason") or last.get("LastUpdateStatusReason") or error.kwargs.get("reason")
                          or str(error))
                raise DeployError(f"the function {function_name} did not become ready: {reason}") from None

    @contextmanager
    def _sentences(self, client, operation: str, resource: str):
        """boto3's and botocore's exceptions raised inside, as one DeployError sentence each."""
        try:
            yield
        except ClientError as error:
            raise self._refusal(error, client, operation, resource) from None
        except (NoCredentialsError, PartialCredentialsError):
            raise DeployError(NO_CREDENTIALS) from None
        except EndpointConnectionError as error:
            raise DeployError(f"could not reach AWS at {error.kwargs.get('endpoint_url')}: check the network and "
                              "the region") from None
        except BotoCoreError as error:
            raise DeployError(f"{_action(client, operation)} failed: {error}") from None

    def _refusal(self, error: ClientError, client, operation: str, resource: str) -> DeployError:
        code = _code(error)
        message = error.response.get("Error", {}).get("Message", "") or ""
        action = _action(client, operation)
        if code in CREDENTIALS_REFUSED:
            return DeployError(f"AWS refused the credentials ({code}): check AWS_PROFILE or the access keys, "
                               "or sign in again")
        if code in ACCESS_DENIED:
            named = re.search(r"not authorized to perform: ([\w-]+:[\w*]+)", message)
            on = re.search(r"on resource: (\S+)", message)
            action, resource = (named.group(1) if named else action), (on.group(1) if on else resource)
            return DeployError(f"access denied: {self.identity} may not {action} on {resource}; grant it that "
                               "permission (README, \"Deploy to AWS\", lists what deploy needs)")
        return DeployError(f"{action} on {resource} failed: {code}: {message}".rstrip(": "))


def _session(region: str | None, profile: str | None) -> boto3.Session:
    try:
        return boto3.Session(profile_name=profile, region_name=region)
    except ProfileNotFound as error:
        raise DeployError(f"there is no AWS profile named {error.kwargs['profile']!r} in the AWS config files") from None


def _clients(session: boto3.Session, services: list[str]) -> dict:
    """The session's clients, once it is known to have a region and credentials."""
    if not session.region_name:
        raise DeployError("no AWS region: pass --region, or set AWS_DEFAULT_REGION or a region in the AWS profile")
    try:
        credentials = session.get_credentials()
    except (BotoCoreError, ValueError) as error:
        raise DeployError(f"the AWS credentials could not be loaded: {error}") from None
    if credentials is None:
        raise DeployError(NO_CREDENTIALS)
    try:
        return {name: session.client(name, config=CLIENT_CONFIG) for name in services}
    except BotoCoreError as error:
        raise DeployError(f"boto3 could not make its AWS clients: {error}") from None


def _code(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Code", "")


def _bucket_region_header(response: dict) -> str | None:
    return response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("x-amz-bucket-region")


def _action(client, operation: str) -> str:
    """The IAM action an operation needs, as an access denial names it."""
    if operation in _ACTIONS:
        return _ACTIONS[operation]
    prefix = client.meta.service_model.signing_name
    return f"{prefix}:{''.join(word.title() for word in operation.split('_'))}"
