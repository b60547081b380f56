"""Deploy the lake handler to AWS Lambda, idempotently, and take it away again.

`deploy` makes four things agree with what it is asked for, creating or
updating each only when it differs, and says which it touched:

    role            an IAM execution role Lambda may assume (path /lakemagic/, tagged lakemagic:deploy)
    policy          the role's one inline policy: read the lake, write results and dashboard/, its own logs
    function        the code (by SHA-256) and the configuration (handler, runtime, memory, timeout, env)
    lifecycle rule  on the lake's bucket: results under <lake>/_lakemagic/results/ expire after a day

`destroy` removes those (and the function's log group), never the bucket or
its data. Every AWS failure becomes one sentence (DeployError); an access
denial names the permission that is missing.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from urllib.parse import unquote

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

from lakelambda.results import RESULTS_PREFIX
from lakemagic.engine import DEFAULT_FUNCTION_NAME

from .errors import DeployError
from .package import DIRECT_UPLOAD_LIMIT, MB, PackageInfo, Target, WheelSource, build_package

HANDLER = "lakelambda.handler.handler"
ROLE_PATH = "/lakemagic/"
POLICY_NAME = "lakemagic-lake-access"
OWNER_TAG = "lakemagic:deploy"  # on the role and the function: destroy removes only what carries it
DEPLOY_PREFIX = "_lakemagic/deploy"  # packages too big for a direct upload, by SHA-256
DASHBOARD_PREFIX = "dashboard"  # where the handler materializes views
RESULT_EXPIRY_DAYS = 1
ITEMS = ("role", "policy", "function code", "configuration", "lifecycle rule")
TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}
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
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PREFIX_SEGMENT = re.compile(r"^[A-Za-z0-9_.=+-]+$")
_FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class LakeLocation:
    """s3://BUCKET[/prefix], checked: the prefix ends up in IAM resource ARNs, so no wildcards get in."""

    bucket: str
    prefix: str  # "" or "a/b", no slash at either end

    @classmethod
    def parse(cls, text: str) -> "LakeLocation":
        usage = f"--lake must be an S3 location like s3://BUCKET or s3://BUCKET/prefix, not {text!r}"
        if not isinstance(text, str) or not text.startswith("s3://"):
            raise DeployError(usage)
        bucket, _, prefix = text[len("s3://"):].partition("/")
        prefix = prefix.strip("/")
        if not _BUCKET.match(bucket) or ".." in bucket:
            raise DeployError(f"{usage}: {bucket!r} is not a valid S3 bucket name (3-63 lower-case letters, digits, dots, hyphens)")
        segments = prefix.split("/") if prefix else []
        if any(not _PREFIX_SEGMENT.match(segment) or segment in (".", "..") for segment in segments):
            raise DeployError(f"{usage}: the prefix may hold only letters, digits and _ . = + - between slashes")
        return cls(bucket, prefix)

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def key(self, relative: str) -> str:
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def arn(self, partition: str, relative: str | None = None) -> str:
        return f"arn:{partition}:s3:::{self.bucket}" if relative is None else f"arn:{partition}:s3:::{self.bucket}/{self.key(relative)}"


@dataclass
class DeployOptions:
    lake: str
    region: str | None = None
    profile: str | None = None
    function_name: str = DEFAULT_FUNCTION_NAME
    memory: int = 2048
    timeout: int = 300
    architecture: str = "x86_64"
    runtime: str = "python3.12"
    create_bucket: bool = False
    package: str | None = None  # a zip built beforehand, instead of building one


@dataclass
class DestroyOptions:
    function_name: str = DEFAULT_FUNCTION_NAME
    region: str | None = None
    profile: str | None = None
    lake: str | None = None  # else read from the function's LAKEMAGIC_LAKE


def role_name(function_name: str) -> str:
    name = f"lakemagic-{function_name}"
    if len(name) > 64:  # IAM's limit; function names may be 64 themselves
        name = f"{name[:55]}-{hashlib.sha256(function_name.encode()).hexdigest()[:8]}"
    return name


def lifecycle_rule_id(lake: LakeLocation) -> str:
    return f"lakemagic-results:{lake.prefix}" if lake.prefix else "lakemagic-results"


def lifecycle_rule(lake: LakeLocation) -> dict:
    return {"ID": lifecycle_rule_id(lake), "Filter": {"Prefix": lake.key(RESULTS_PREFIX + "/")},
            "Status": "Enabled", "Expiration": {"Days": RESULT_EXPIRY_DAYS}}


def lake_policy(lake: LakeLocation, partition: str, region: str, account: str, function_name: str) -> dict:
    """What the function may do, and nothing more: no wildcard actions, no "*" resource."""
    listing = {"Sid": "ListTheLake", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [lake.arn(partition)]}
    if lake.prefix:  # a lake at the bucket's root is the whole bucket
        listing["Condition"] = {"StringLike": {"s3:prefix": [f"{lake.prefix}/", f"{lake.prefix}/*"]}}
    log_group = f"arn:{partition}:logs:{region}:{account}:log-group:/aws/lambda/{function_name}"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "ReadTheLake", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": [lake.arn(partition, "*")]},
            listing,
            {"Sid": "WriteResultsAndDashboards", "Effect": "Allow", "Action": ["s3:PutObject"],
             "Resource": [lake.arn(partition, f"{RESULTS_PREFIX}/*"), lake.arn(partition, f"{DASHBOARD_PREFIX}/*")]},
            {"Sid": "WriteOwnLogs", "Effect": "Allow",
             "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
             "Resource": [log_group, f"{log_group}:*"]},
        ],
    }


class Aws:
    """boto3 clients for one account and region, whose failures come back as sentences."""

    def __init__(self, region: str | None, profile: str | None):
        try:
            self.session = boto3.Session(profile_name=profile, region_name=region)
        except ProfileNotFound:
            raise DeployError(f"there is no AWS profile named {profile!r} in the AWS config files") from None
        self.region = self.session.region_name
        if not self.region:
            raise DeployError("no AWS region: pass --region, or set AWS_DEFAULT_REGION or a region in the AWS profile")
        try:
            credentials = self.session.get_credentials()
        except (BotoCoreError, ValueError) as error:
            raise DeployError(f"the AWS credentials could not be loaded: {error}") from None
        if credentials is None:
            raise DeployError(NO_CREDENTIALS)
        config = Config(retries={"max_attempts": 8, "mode": "standard"}, connect_timeout=10, read_timeout=300)
        self.s3, self.iam, self.lam, self.logs, self.sts = (
            self.session.client(name, config=config) for name in ("s3", "iam", "lambda", "logs", "sts"))
        try:
            self.partition = self.session.get_partition_for_region(self.region)
        except Exception:  # an unknown region or an old botocore: the commercial partition
            self.partition = "aws"
        self.identity = "the AWS identity in use"
        self.account = None

    def whoami(self) -> str:
        answer = self.call(self.sts, "get_caller_identity", "*")
        self.identity, self.account = answer["Arn"], answer["Account"]
        return self.account

    def call(self, client, operation: str, resource: str, absent: tuple[str, ...] = (), **parameters):
        """client.operation(**parameters); None if AWS answers with one of the `absent` codes."""
        try:
            return getattr(client, operation)(**parameters)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in absent:
                return None
            raise self.sentence(error, client, operation, resource) from None
        except (NoCredentialsError, PartialCredentialsError):
            raise DeployError(NO_CREDENTIALS) from None
        except EndpointConnectionError as error:
            raise DeployError(f"could not reach AWS at {error.kwargs.get('endpoint_url')}: check the network and "
                              "the region") from None
        except BotoCoreError as error:
            raise DeployError(f"{self.action(client, operation)} failed: {error}") from None

    @staticmethod
    def action(client, operation: str) -> str:
        if operation in _ACTIONS:
            return _ACTIONS[operation]
        prefix = client.meta.service_model.signing_name
        return f"{prefix}:{''.join(word.title() for word in operation.split('_'))}"

    def sentence(self, error: ClientError, client, operation: str, resource: str) -> DeployError:
        code = error.response.get("Error", {}).get("Code", "")
        message = error.response.get("Error", {}).get("Message", "") or ""
        action = self.action(client, operation)
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

    def wait(self, waiter: str, function_name: str) -> None:
        """Until the function is Active (after create) or its last update is done; fails with Lambda's reason."""
        try:
            self.lam.get_waiter(waiter).wait(FunctionName=function_name, WaiterConfig={"Delay": 2, "MaxAttempts": 300})
        except WaiterError as error:
            last = getattr(error, "last_response", None) or {}
            reason = last.get("StateReason") or last.get("LastUpdateStatusReason") or error.kwargs.get("reason") or str(error)
            raise DeployError(f"the function {function_name} did not become ready: {reason}") from None


def deploy(options: DeployOptions, *, out=print, cache_dir=None, source: WheelSource | None = None,
           direct_upload_limit: int = DIRECT_UPLOAD_LIMIT, role_wait_s: float = 120.0) -> dict:
    """Make the role, policy, function and lifecycle rule what `options` say; return {item: what happened}."""
    lake = LakeLocation.parse(options.lake)
    target = Target(options.runtime, options.architecture)
    _check(options)
    aws = Aws(options.region, options.profile)
    account = aws.whoami()
    name = options.function_name
    out(f"deploying {name} to {aws.region} over {lake.url} ({target.runtime}, {target.architecture}, "
        f"{options.memory} MB, {options.timeout} s)")
    _ensure_bucket(aws, lake, options.create_bucket, out)

    if options.package:
        package = PackageInfo.from_zip(options.package, [f"{options.package} (given)"])
        out(f"package: {package.path} (given)")
    else:
        package = build_package(target, source, cache_dir, log=out)
    package.check_target(target)
    out(f"package size: {package.size_report(direct_upload_limit)}")
    over_direct_limit = package.upload_method(direct_upload_limit) == "s3"  # or refused: over the unzipped limit
    for note in package.notes:
        out(f"note: {note}")
    if not package.has_httpfs and not package.notes:  # a given package; a built one has said why already
        out("note: the package has no httpfs extension, so the function sets LAKEMAGIC_INSTALL_HTTPFS=1 and installs "
            "it from DuckDB's extension repository into /tmp at each cold start")

    outcome = {}
    role_arn, outcome["role"] = _ensure_role(aws, name, lake)
    outcome["policy"] = _ensure_policy(aws, name, lake_policy(lake, aws.partition, aws.region, account, name))
    code = _Code(aws, package, lake, over_direct_limit, out)
    outcome["function code"], outcome["configuration"] = _ensure_function(
        aws, options, target, package, lake, role_arn, code, role_wait_s, out)
    outcome["lifecycle rule"] = _ensure_lifecycle_rule(aws, lake, out)

    by_state = {}
    for item in ITEMS:
        by_state.setdefault(outcome[item], []).append(item)
    out("; ".join(f"{state}: {', '.join(items)}" for state, items in sorted(
        by_state.items(), key=lambda pair: ("created", "updated", "up to date").index(pair[0]))))
    out("\nPoint a notebook at it:")
    for line in notebook_config(name, options.region, options.profile):
        out(f"    {line}")
    return outcome


def notebook_config(function_name: str, region: str | None = None, profile: str | None = None) -> list[str]:
    lines = ['%config LakeMagic.engine = "lambda"', f"%config LakeMagic.function_name = {json.dumps(function_name)}"]
    if region:
        lines.append(f"%config LakeMagic.region = {json.dumps(region)}")
    if profile:
        lines.append(f"%config LakeMagic.profile = {json.dumps(profile)}")
    return lines


def _check(options: DeployOptions) -> None:
    if not _FUNCTION_NAME.match(options.function_name or ""):
        raise DeployError(f"--function-name must be 1-64 letters, digits, hyphens or underscores; got {options.function_name!r}")
    if not 128 <= options.memory <= 10240:
        raise DeployError(f"--memory must be between 128 and 10240 MB (Lambda's range); got {options.memory}")
    if not 1 <= options.timeout <= 900:
        raise DeployError(f"--timeout must be between 1 and 900 seconds (Lambda's range); got {options.timeout}")


def _ensure_bucket(aws: Aws, lake: LakeLocation, create: bool, out) -> None:
    try:
        answer = aws.s3.head_bucket(Bucket=lake.bucket)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code")
        located = error.response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("x-amz-bucket-region")
        if code in ("301", "PermanentRedirect") and located:
            raise DeployError(f"the bucket {lake.bucket} is in {located} but the function would be in {aws.region}: "
                              f"pass --region {located}, so DuckDB reads the lake from its own region") from None
        if code not in ("404", "NoSuchBucket", "NotFound"):
            raise aws.sentence(error, aws.s3, "head_bucket", lake.arn(aws.partition)) from None
        if not create:
            raise DeployError(f"the bucket {lake.bucket} does not exist: create it, or pass --create-bucket") from None
        extra = {} if aws.region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": aws.region}}
        aws.call(aws.s3, "create_bucket", lake.arn(aws.partition), Bucket=lake.bucket, **extra)
        out(f"bucket {lake.bucket}: created in {aws.region}")
        return
    except (NoCredentialsError, PartialCredentialsError):
        raise DeployError(NO_CREDENTIALS) from None
    except EndpointConnectionError as error:
        raise DeployError(f"could not reach AWS at {error.kwargs.get('endpoint_url')}: check the network and the region") from None
    located = answer.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("x-amz-bucket-region")
    if located and located != aws.region:
        raise DeployError(f"the bucket {lake.bucket} is in {located} but the function would be in {aws.region}: "
                          f"pass --region {located}, so DuckDB reads the lake from its own region")


def _document(document) -> dict:
    """IAM hands policy documents back URL-encoded (boto3 usually decodes them already)."""
    return json.loads(unquote(document)) if isinstance(document, str) else document


def _tags(listing) -> dict:
    if isinstance(listing, dict):
        return listing
    return {tag["Key"]: tag["Value"] for tag in listing or ()}


def _ensure_role(aws: Aws, function_name: str, lake: LakeLocation) -> tuple[str, str]:
    name = role_name(function_name)
    arn = f"arn:{aws.partition}:iam::{aws.account}:role{ROLE_PATH}{name}"
    found = aws.call(aws.iam, "get_role", arn, absent=("NoSuchEntity",), RoleName=name)
    if found is None:
        created = aws.call(
            aws.iam, "create_role", arn, RoleName=name, Path=ROLE_PATH,
            AssumeRolePolicyDocument=json.dumps(TRUST_POLICY),
            Description=f"lakemagic: the execution role of the Lambda function {function_name}",
            Tags=[{"Key": OWNER_TAG, "Value": function_name}])
        return created["Role"]["Arn"], "created"
    role = found["Role"]
    if OWNER_TAG not in _tags(role.get("Tags")):
        raise DeployError(f"an IAM role named {name} already exists and was not made by lakemagic deploy (it has no "
                          f"{OWNER_TAG} tag): delete it, or pick another --function-name")
    if _document(role["AssumeRolePolicyDocument"]) != TRUST_POLICY:
        aws.call(aws.iam, "update_assume_role_policy", role["Arn"], RoleName=name, PolicyDocument=json.dumps(TRUST_POLICY))
        return role["Arn"], "updated"
    return role["Arn"], "up to date"


def _ensure_policy(aws: Aws, function_name: str, policy: dict) -> str:
    name = role_name(function_name)
    resource = f"arn:{aws.partition}:iam::{aws.account}:role{ROLE_PATH}{name}"
    found = aws.call(aws.iam, "get_role_policy", resource, absent=("NoSuchEntity",), RoleName=name, PolicyName=POLICY_NAME)
    if found is not None and _document(found["PolicyDocument"]) == policy:
        return "up to date"
    aws.call(aws.iam, "put_role_policy", resource, RoleName=name, PolicyName=POLICY_NAME, PolicyDocument=json.dumps(policy))
    return "created" if found is None else "updated"


class _Code:
    """The Code / code arguments for Lambda, uploading to the lake's bucket first when the zip is too big to send."""

    def __init__(self, aws: Aws, package: PackageInfo, lake: LakeLocation, through_s3: bool, out):
        self.aws, self.package, self.lake, self.through_s3, self.out = aws, package, lake, through_s3, out

    def arguments(self) -> dict:
        if not self.through_s3:
            with open(self.package.path, "rb") as stream:
                return {"ZipFile": stream.read()}
        key = self.lake.key(f"{DEPLOY_PREFIX}/{self.package.sha256}.zip")
        arn = f"arn:{self.aws.partition}:s3:::{self.lake.bucket}/{key}"
        if self.aws.call(self.aws.s3, "head_object", arn, absent=("404", "NoSuchKey", "NotFound"),
                         Bucket=self.lake.bucket, Key=key) is None:
            with open(self.package.path, "rb") as stream:
                self.aws.call(self.aws.s3, "put_object", arn, Bucket=self.lake.bucket, Key=key, Body=stream)
        self.out(f"package uploaded to s3://{self.lake.bucket}/{key}: the function's code comes from there "
                 f"({self.package.zipped_bytes / MB:.1f} MB is over what a direct upload takes)")
        return {"S3Bucket": self.lake.bucket, "S3Key": key}


def _ensure_function(aws: Aws, options: DeployOptions, target: Target, package: PackageInfo, lake: LakeLocation,
                     role_arn: str, code: _Code, role_wait_s: float, out) -> tuple[str, str]:
    name = options.function_name
    arn = f"arn:{aws.partition}:lambda:{aws.region}:{aws.account}:function:{name}"
    found = aws.call(aws.lam, "get_function", arn, absent=("ResourceNotFoundException",), FunctionName=name)
    existing_env = ((found or {}).get("Configuration", {}).get("Environment") or {}).get("Variables") or {}
    environment = {key: value for key, value in existing_env.items() if not key.startswith("LAKEMAGIC_")}
    environment["LAKEMAGIC_LAKE"] = lake.url
    if not package.has_httpfs:
        environment["LAKEMAGIC_INSTALL_HTTPFS"] = "1"
    configuration = {"Role": role_arn, "Handler": HANDLER, "Runtime": target.runtime, "MemorySize": options.memory,
                     "Timeout": options.timeout, "Environment": {"Variables": environment}}
    if found is None:
        _create_function(aws, arn, name, configuration, target, code.arguments(), lake, role_wait_s, out)
        aws.wait("function_active_v2", name)
        aws.wait("function_updated_v2", name)
        return "created", "created"

    current = found["Configuration"]
    if current.get("PackageType", "Zip") != "Zip":
        raise DeployError(f"the function {name} is a container-image function; lakemagic deploy manages .zip functions only")
    aws.wait("function_updated_v2", name)  # Lambda refuses an update while another is in progress
    code_state = "up to date"
    if current.get("CodeSha256") != package.code_sha256 or current.get("Architectures", ["x86_64"]) != [target.architecture]:
        aws.call(aws.lam, "update_function_code", arn, FunctionName=name, Architectures=[target.architecture],
                 **code.arguments())
        aws.wait("function_updated_v2", name)
        code_state = "updated"
    present = {"Role": current.get("Role"), "Handler": current.get("Handler"), "Runtime": current.get("Runtime"),
               "MemorySize": current.get("MemorySize"), "Timeout": current.get("Timeout"),
               "Environment": {"Variables": existing_env}}
    if present == configuration:
        return code_state, "up to date"
    _while_role_propagates(aws, "update_function_configuration", arn, role_arn, role_wait_s, out,
                           FunctionName=name, **configuration)
    aws.wait("function_updated_v2", name)
    return code_state, "updated"


def _create_function(aws: Aws, arn: str, name: str, configuration: dict, target: Target, code: dict,
                     lake: LakeLocation, role_wait_s: float, out) -> None:
    _while_role_propagates(
        aws, "create_function", arn, configuration["Role"], role_wait_s, out,
        FunctionName=name, PackageType="Zip", Code=code, Architectures=[target.architecture],
        Description=f"lakemagic: DuckDB over {lake.url}", Tags={OWNER_TAG: name}, **configuration)


def _while_role_propagates(aws: Aws, operation: str, arn: str, role_arn: str, role_wait_s: float, out, **parameters):
    """A Lambda call naming a role, retried with backoff while Lambda cannot assume it yet (IAM is eventually consistent)."""
    deadline = time.monotonic() + role_wait_s
    delay, told = 1.0, False
    while True:
        try:
            return getattr(aws.lam, operation)(**parameters)
        except ClientError as error:
            details = error.response.get("Error", {})
            propagating = (details.get("Code") == "InvalidParameterValueException"
                           and "cannot be assumed" in details.get("Message", ""))
            if not propagating:
                raise aws.sentence(error, aws.lam, operation, arn) from None
            if time.monotonic() + delay > deadline:
                raise DeployError(f"Lambda still cannot assume the role {role_arn} after {role_wait_s:.0f} s; "
                                  "run deploy again in a minute (IAM changes take a while to spread)") from None
            if not told:
                out("waiting for the new role to reach Lambda (IAM takes a few seconds to propagate)...")
                told = True
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
        except (NoCredentialsError, PartialCredentialsError):
            raise DeployError(NO_CREDENTIALS) from None
        except BotoCoreError as error:
            raise DeployError(f"{Aws.action(aws.lam, operation)} failed: {error}") from None


def _lifecycle(aws: Aws, lake: LakeLocation, absent=("NoSuchLifecycleConfiguration",)) -> dict | None:
    return aws.call(aws.s3, "get_bucket_lifecycle_configuration", lake.arn(aws.partition), absent=absent,
                    Bucket=lake.bucket)


def _put_rules(aws: Aws, lake: LakeLocation, current: dict | None, rules: list[dict]) -> None:
    if not rules:
        aws.call(aws.s3, "delete_bucket_lifecycle", lake.arn(aws.partition), Bucket=lake.bucket)
        return
    extra = {}
    if current and current.get("TransitionDefaultMinimumObjectSize"):  # a bucket-wide setting: keep it as it is
        extra["TransitionDefaultMinimumObjectSize"] = current["TransitionDefaultMinimumObjectSize"]
    aws.call(aws.s3, "put_bucket_lifecycle_configuration", lake.arn(aws.partition), Bucket=lake.bucket,
             LifecycleConfiguration={"Rules": rules}, **extra)


def _ensure_lifecycle_rule(aws: Aws, lake: LakeLocation, out) -> str:
    """Results expire after a day; the bucket's other rules are kept exactly as they are."""
    rule = lifecycle_rule(lake)
    current = _lifecycle(aws, lake)
    rules = (current or {}).get("Rules", [])
    mine = [existing for existing in rules if existing.get("ID") == rule["ID"]]
    others = [existing for existing in rules if existing.get("ID") != rule["ID"]]
    if len(mine) == 1 and {k: v for k, v in mine[0].items() if k != "ID"} == {k: v for k, v in rule.items() if k != "ID"}:
        return "up to date"
    _put_rules(aws, lake, current, others + [rule])
    kept = f"; the bucket's {len(others)} other rule{'s' if len(others) != 1 else ''} kept" if others else ""
    out(f"lifecycle rule {rule['ID']}: s3://{lake.bucket}/{rule['Filter']['Prefix']} expires after "
        f"{RESULT_EXPIRY_DAYS} day{kept}")
    return "updated" if mine else "created"


def destroy(options: DestroyOptions, *, out=print) -> dict:
    """Remove the function, its role and policy, its log group and the lifecycle rule; keep the bucket and its data."""
    lake = LakeLocation.parse(options.lake) if options.lake else None
    if not _FUNCTION_NAME.match(options.function_name or ""):
        raise DeployError(f"--function-name must be 1-64 letters, digits, hyphens or underscores; got {options.function_name!r}")
    aws = Aws(options.region, options.profile)
    aws.whoami()
    name = options.function_name
    outcome = {}

    arn = f"arn:{aws.partition}:lambda:{aws.region}:{aws.account}:function:{name}"
    found = aws.call(aws.lam, "get_function", arn, absent=("ResourceNotFoundException",), FunctionName=name)
    if found is not None:
        if OWNER_TAG not in _tags(found.get("Tags")):
            raise DeployError(f"the function {name} was not created by lakemagic deploy (it has no {OWNER_TAG} tag), "
                              "so destroy leaves it alone")
        variables = (found["Configuration"].get("Environment") or {}).get("Variables") or {}
        if lake is None and variables.get("LAKEMAGIC_LAKE"):
            lake = LakeLocation.parse(variables["LAKEMAGIC_LAKE"])
        aws.call(aws.lam, "delete_function", arn, absent=("ResourceNotFoundException",), FunctionName=name)
    outcome["function"] = "removed" if found is not None else "already gone"

    role = role_name(name)
    role_arn = f"arn:{aws.partition}:iam::{aws.account}:role{ROLE_PATH}{role}"
    found_role = aws.call(aws.iam, "get_role", role_arn, absent=("NoSuchEntity",), RoleName=role)
    if found_role is not None and OWNER_TAG not in _tags(found_role["Role"].get("Tags")):
        raise DeployError(f"the IAM role {role} was not made by lakemagic deploy (it has no {OWNER_TAG} tag), so "
                          "destroy leaves it alone")
    policy = None
    if found_role is not None:
        policy = aws.call(aws.iam, "delete_role_policy", role_arn, absent=("NoSuchEntity",), RoleName=role,
                          PolicyName=POLICY_NAME)
        try:
            aws.iam.delete_role(RoleName=role)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "DeleteConflict":
                raise DeployError(f"the IAM role {role} has policies lakemagic did not put there; detach them and "
                                  "run destroy again") from None
            if error.response.get("Error", {}).get("Code") != "NoSuchEntity":
                raise aws.sentence(error, aws.iam, "delete_role", role_arn) from None
    outcome["role"] = "removed" if found_role is not None else "already gone"
    outcome["policy"] = "removed" if policy is not None else "already gone"

    if lake is None:
        out("no --lake given and no function to read it from: a lifecycle rule lakemagic deploy added, if any, is left")
        outcome["lifecycle rule"] = "unknown"
    else:
        outcome["lifecycle rule"] = _remove_lifecycle_rule(aws, lake)
        _remove_uploaded_packages(aws, lake, out)

    log_group = f"/aws/lambda/{name}"
    try:
        aws.logs.delete_log_group(logGroupName=log_group)
        outcome["log group"] = "removed"
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code")
        if code == "ResourceNotFoundException":
            outcome["log group"] = "already gone"
        elif code in ACCESS_DENIED:
            out(f"kept the log group {log_group}: {aws.identity} may not logs:DeleteLogGroup")
            outcome["log group"] = "kept"
        else:
            raise aws.sentence(error, aws.logs, "delete_log_group", log_group) from None

    removed = [item for item, state in outcome.items() if state == "removed"]
    gone = [item for item, state in outcome.items() if state == "already gone"]
    kept = f"kept: the bucket {lake.bucket} and its data" if lake else "kept: the lake's bucket and its data"
    if removed:
        out(f"removed: {', '.join(removed)}" + (f"; already gone: {', '.join(gone)}" if gone else "") + f"; {kept}")
    else:
        out(f"nothing to remove: {', '.join(gone)} already gone; {kept}")
    return outcome


def _remove_lifecycle_rule(aws: Aws, lake: LakeLocation) -> str:
    current = _lifecycle(aws, lake, absent=("NoSuchLifecycleConfiguration", "NoSuchBucket"))
    rules = (current or {}).get("Rules", [])
    others = [rule for rule in rules if rule.get("ID") != lifecycle_rule_id(lake)]
    if len(others) == len(rules):
        return "already gone"
    _put_rules(aws, lake, current, others)
    return "removed"


def _remove_uploaded_packages(aws: Aws, lake: LakeLocation, out) -> None:
    """Packages deploy put in the bucket because they were too big to send directly."""
    prefix = lake.key(f"{DEPLOY_PREFIX}/")
    listing = aws.call(aws.s3, "list_objects_v2", lake.arn(aws.partition), absent=("NoSuchBucket",),
                       Bucket=lake.bucket, Prefix=prefix)
    keys = [item["Key"] for item in (listing or {}).get("Contents", [])]
    if keys:
        aws.call(aws.s3, "delete_objects", lake.arn(aws.partition, f"{DEPLOY_PREFIX}/*"), Bucket=lake.bucket,
                 Delete={"Objects": [{"Key": key} for key in keys]})
        out(f"removed {len(keys)} uploaded package{'s' if len(keys) != 1 else ''} from s3://{lake.bucket}/{prefix}")
