"""What a deployment should look like, worked out without asking AWS.

The lake's location, the names and ARNs deploy gives things, the role's
trust policy and its one inline policy, the function's VPC settings and
environment, the results' lifecycle rule, and the options both commands
take. Nothing here imports boto3, so all of it can be read, and tested,
without an AWS account.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from lakelambda.storage import INTERNAL_FOLDER, S3_SCHEME, split_s3_path
from lakelambda.protocol import DASHBOARD_FOLDER
from lakelambda.results import RESULTS_PREFIX

from . import DEFAULT_ARCHITECTURE, DEFAULT_FUNCTION_NAME, DEFAULT_MEMORY_MB, DEFAULT_RUNTIME, DEFAULT_TIMEOUT_S
from .errors import DeployError

HANDLER = "lakelambda.handler.handler"
ROLE_PATH = "/lakemagic/"
POLICY_NAME = "lakemagic-lake-access"
OWNER_TAG = "lakemagic:deploy"  # on the role and the function: destroy removes only what carries it
DEPLOY_PREFIX = f"{INTERNAL_FOLDER}/deploy"  # packages too big for a direct upload, by SHA-256
RESULT_EXPIRY_DAYS = 1
TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PREFIX_SEGMENT = re.compile(r"^[A-Za-z0-9_.=+-]+$")
_FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SUBNET_ID = re.compile(r"subnet-[0-9a-f]+")
_SECURITY_GROUP_ID = re.compile(r"sg-[0-9a-f]+")
# The function's variables deploy sets; every other one on the function (an operator's tuning, such as
# LAKEMAGIC_INLINE_RESULT_BYTES) is kept as it is by a redeploy.
LAKE_VARIABLE = "LAKEMAGIC_LAKE"
INSTALL_HTTPFS_VARIABLE = "LAKEMAGIC_INSTALL_HTTPFS"  # only for a package without httpfs
MAX_RESULT_BYTES_VARIABLE = "LAKEMAGIC_MAX_RESULT_BYTES"  # only with --max-result-bytes; else the function's stays


@dataclass(frozen=True)
class LakeLocation:
    """s3://BUCKET[/prefix], checked: the prefix ends up in IAM resource ARNs, so no wildcards get in."""

    bucket: str
    prefix: str  # "" or "a/b", no slash at either end

    @classmethod
    def parse(cls, text: str) -> "LakeLocation":
        usage = f"--lake must be an S3 location like s3://BUCKET or s3://BUCKET/prefix, not {text!r}"
        if not isinstance(text, str) or not text.startswith(S3_SCHEME):
            raise DeployError(usage)
        bucket, prefix = split_s3_path(text)
        if not _BUCKET.match(bucket) or ".." in bucket:
            raise DeployError(f"{usage}: {bucket!r} is not a valid S3 bucket name (3-63 lower-case letters, digits, dots, hyphens)")
        segments = prefix.split("/") if prefix else []
        if any(not _PREFIX_SEGMENT.match(segment) or segment in (".", "..") for segment in segments):
            raise DeployError(f"{usage}: the prefix may hold only letters, digits and _ . = + - between slashes")
        return cls(bucket, prefix)

    @property
    def url(self) -> str:
        return f"{S3_SCHEME}{self.bucket}/{self.prefix}" if self.prefix else f"{S3_SCHEME}{self.bucket}"

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
    memory: int = DEFAULT_MEMORY_MB
    timeout: int = DEFAULT_TIMEOUT_S
    architecture: str = DEFAULT_ARCHITECTURE
    runtime: str = DEFAULT_RUNTIME
    create_bucket: bool = False
    package: str | None = None  # a zip built beforehand, instead of building one
    subnet_ids: Sequence[str] = ()  # with security_group_ids: the function's VPC; neither: the VPC it has stays
    security_group_ids: Sequence[str] = ()
    no_vpc: bool = False  # take the function out of its VPC
    max_result_bytes: int | None = None  # None: the function keeps the cap it has

    def check(self) -> None:
        """Refuse what Lambda would refuse, or what contradicts itself, before anything is built or asked of AWS."""
        check_function_name(self.function_name)
        if not 128 <= self.memory <= 10240:
            raise DeployError(f"--memory must be between 128 and 10240 MB (Lambda's range); got {self.memory}")
        if not 1 <= self.timeout <= 900:
            raise DeployError(f"--timeout must be between 1 and 900 seconds (Lambda's range); got {self.timeout}")
        if self.no_vpc and (self.subnet_ids or self.security_group_ids):
            raise DeployError("--no-vpc takes the function out of its VPC, so it goes with neither --subnet-ids nor "
                              "--security-group-ids")
        if bool(self.subnet_ids) != bool(self.security_group_ids):
            raise DeployError("--subnet-ids and --security-group-ids go together: a function in a VPC needs both")
        if self.max_result_bytes is not None and self.max_result_bytes < 1:
            raise DeployError(f"--max-result-bytes must be a positive number of bytes; got {self.max_result_bytes}")
        _check_ids("--subnet-ids", self.subnet_ids, _SUBNET_ID, "subnet-0123abcd")
        _check_ids("--security-group-ids", self.security_group_ids, _SECURITY_GROUP_ID, "sg-0123abcd")

    def requested_vpc(self) -> dict | None:
        """The VpcConfig asked for (empty lists with --no-vpc), or None: keep the function's."""
        if self.no_vpc or self.subnet_ids:
            return vpc_config({"SubnetIds": self.subnet_ids, "SecurityGroupIds": self.security_group_ids})
        return None

    def environment(self, existing: dict, lake: LakeLocation, has_httpfs: bool) -> dict:
        """The function's variables: deploy's own from these options, any other already on the function kept.

        `existing` is the function's now ({} for a new one); a redeploy must not
        drop what an operator set there.
        """
        environment = {name: value for name, value in existing.items() if name != INSTALL_HTTPFS_VARIABLE}
        environment[LAKE_VARIABLE] = lake.url
        if not has_httpfs:
            environment[INSTALL_HTTPFS_VARIABLE] = "1"
        if self.max_result_bytes is not None:
            environment[MAX_RESULT_BYTES_VARIABLE] = str(self.max_result_bytes)
        return environment


@dataclass
class DestroyOptions:
    function_name: str = DEFAULT_FUNCTION_NAME
    region: str | None = None
    profile: str | None = None
    lake: str | None = None  # else read from the function's LAKEMAGIC_LAKE


def check_function_name(name: str | None) -> None:
    if not _FUNCTION_NAME.match(name or ""):
        raise DeployError(f"--function-name must be 1-64 letters, digits, hyphens or underscores; got {name!r}")


def _check_ids(option: str, ids: Sequence[str], shape: re.Pattern, example: str) -> None:
    bad = [item for item in ids if not shape.fullmatch(item)]
    if bad:
        raise DeployError(f"{option} must be IDs like {example}, separated by commas; {bad[0]!r} is not one")


def vpc_config(config: dict | None) -> dict:
    """A function's VpcConfig as deploy compares it: its subnet and security group IDs, sorted, without VpcId."""
    config = config or {}
    return {"SubnetIds": sorted(set(config.get("SubnetIds") or ())),
            "SecurityGroupIds": sorted(set(config.get("SecurityGroupIds") or ()))}


def role_name(function_name: str) -> str:
    name = f"lakemagic-{function_name}"
    if len(name) > 64:  # IAM's limit; function names may be 64 themselves
        name = f"{name[:55]}-{hashlib.sha256(function_name.encode()).hexdigest()[:8]}"
    return name


def role_arn(partition: str, account: str, function_name: str) -> str:
    return f"arn:{partition}:iam::{account}:role{ROLE_PATH}{role_name(function_name)}"


def function_arn(partition: str, region: str, account: str, function_name: str) -> str:
    return f"arn:{partition}:lambda:{region}:{account}:function:{function_name}"


def log_group_name(function_name: str) -> str:
    """Where Lambda writes the function's logs."""
    return f"/aws/lambda/{function_name}"


def made_by_deploy(tags) -> bool:
    """Whether a role's or a function's tags (IAM's Key/Value list, or Lambda's dict) carry OWNER_TAG."""
    if not isinstance(tags, dict):
        tags = {tag["Key"]: tag["Value"] for tag in tags or ()}
    return OWNER_TAG in tags


def lifecycle_rule_id(lake: LakeLocation) -> str:
    return f"lakemagic-results:{lake.prefix}" if lake.prefix else "lakemagic-results"


def lifecycle_rule(lake: LakeLocation) -> dict:
    return {"ID": lifecycle_rule_id(lake), "Filter": {"Prefix": lake.key(RESULTS_PREFIX + "/")},
            "Status": "Enabled", "Expiration": {"Days": RESULT_EXPIRY_DAYS},
            # Big results are multipart uploads straight from DuckDB; one cut off by a timeout would be billed on.
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": RESULT_EXPIRY_DAYS}}


def lake_policy(lake: LakeLocation, partition: str, region: str, account: str, function_name: str,
                vpc: dict) -> dict:
    """What the function may do, and nothing more: no wildcard actions, and no "*" resource outside a VPC.

    In a VPC (`vpc`, a `vpc_config`, with subnets) Lambda manages the
    function's network interfaces with this role: the EC2 actions it needs are
    added, one of them on "*".
    """
    listing = {"Sid": "ListTheLake", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [lake.arn(partition)]}
    if lake.prefix:  # a lake at the bucket's root is the whole bucket
        listing["Condition"] = {"StringLike": {"s3:prefix": [f"{lake.prefix}/", f"{lake.prefix}/*"]}}
    log_group = f"arn:{partition}:logs:{region}:{account}:log-group:{log_group_name(function_name)}"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "ReadTheLake", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": [lake.arn(partition, "*")]},
            listing,
            {"Sid": "WriteResultsAndDashboards", "Effect": "Allow", "Action": ["s3:PutObject"],
             "Resource": [lake.arn(partition, f"{RESULTS_PREFIX}/*"), lake.arn(partition, f"{DASHBOARD_FOLDER}/*")]},
            {"Sid": "WriteOwnLogs", "Effect": "Allow",
             "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
             "Resource": [log_group, f"{log_group}:*"]},
            *(network_interface_statements(partition, region, account, vpc) if vpc["SubnetIds"] else ()),
        ],
    }


def network_interface_statements(partition: str, region: str, account: str, vpc: dict) -> list[dict]:
    """The EC2 actions Lambda needs to give the function network interfaces in `vpc`'s subnets."""
    ec2 = f"arn:{partition}:ec2:{region}:{account}"
    interfaces = f"{ec2}:network-interface/*"  # their IDs are Lambda's to choose
    return [
        {"Sid": "CreateNetworkInterfaces", "Effect": "Allow", "Action": ["ec2:CreateNetworkInterface"],
         "Resource": [interfaces, *(f"{ec2}:subnet/{subnet}" for subnet in vpc["SubnetIds"]),
                      *(f"{ec2}:security-group/{group}" for group in vpc["SecurityGroupIds"])]},
        {"Sid": "ManageNetworkInterfaces", "Effect": "Allow",
         "Action": ["ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses"],
         "Resource": [interfaces]},
        # The policy's one "*": IAM has no resource-level permissions for DescribeNetworkInterfaces, so it is
        # allowed on every resource or on none.
        {"Sid": "DescribeNetworkInterfaces", "Effect": "Allow", "Action": ["ec2:DescribeNetworkInterfaces"],
         "Resource": ["*"]},
    ]
