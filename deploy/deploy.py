"""`lakemagic deploy`: make four things what the options say, idempotently, and say which were touched.

    role            an IAM execution role Lambda may assume (path /lakemagic/, tagged lakemagic:deploy)
    policy          the role's one inline policy: read the lake, write results and dashboard/, its own logs,
                    and in a VPC the network interfaces Lambda makes for the function
    function        the code (by SHA-256) and the configuration (handler, runtime, memory, timeout, env, VPC)
    lifecycle rule  on the lake's bucket: results under <lake>/_lakemagic/results/ expire after a day

Each is created or updated only where it differs from what is asked, so
running deploy again changes nothing and says so ("up to date: ...").
Without VPC options the function stays in the VPC it is in, or in none.
"""

from __future__ import annotations

import json
from urllib.parse import unquote

from . import EPHEMERAL_STORAGE_MB
from .errors import DeployError
from .lifecycle import ensure_lifecycle_rule
from .package import DIRECT_UPLOAD_LIMIT, MB, PackageInfo, build_package
from .plan import (
    DEPLOY_PREFIX, HANDLER, OWNER_TAG, POLICY_NAME, ROLE_PATH, TRUST_POLICY, DeployOptions, LakeLocation, function_arn,
    lake_policy, made_by_deploy, role_arn, role_name, vpc_config,
)
from .session import Aws
from .wheels import Target, WheelSource

ITEMS = ("role", "policy", "function code", "configuration", "lifecycle rule")
STATES = ("created", "updated", "up to date")  # the order the summary names them in


def deploy(options: DeployOptions, *, aws: Aws | None = None, out=print, cache_dir=None,
           source: WheelSource | None = None, direct_upload_limit: int = DIRECT_UPLOAD_LIMIT,
           role_wait_s: float = 120.0) -> dict:
    """Make the role, policy, function and lifecycle rule what `options` say; return {item: what happened}.

    `aws` defaults to the account and region of `options.region` and `options.profile`.
    """
    lake = LakeLocation.parse(options.lake)
    target = Target(options.runtime, options.architecture)
    options.check()
    if aws is None:
        aws = Aws.connect(options.region, options.profile)
    account = aws.whoami()
    name = options.function_name
    out(f"deploying {name} to {aws.region} over {lake.url} ({target.runtime}, {target.architecture}, "
        f"{options.memory} MB, {options.timeout} s, {EPHEMERAL_STORAGE_MB} MB of /tmp for DuckDB's spill and "
        "local result copies; big results go straight to S3)")
    _ensure_bucket(aws, lake, options.create_bucket, out)
    package, through_s3 = _package(options, target, source, cache_dir, direct_upload_limit, out)

    outcome = {}
    arn, outcome["role"] = _ensure_role(aws, name)
    found = aws.call(aws.lam, "get_function", function_arn(aws.partition, aws.region, account, name),
                     absent=("ResourceNotFoundException",), FunctionName=name)
    vpc = options.requested_vpc()
    if vpc is None:
        vpc = vpc_config((found or {}).get("Configuration", {}).get("VpcConfig"))
    outcome["policy"] = _ensure_policy(aws, name, lake_policy(lake, aws.partition, aws.region, account, name, vpc))
    outcome["function code"], outcome["configuration"] = _ensure_function(
        aws, options, found, vpc, target, package, lake, arn, through_s3, role_wait_s, out)
    outcome["lifecycle rule"] = ensure_lifecycle_rule(aws, lake, out)

    by_state = {}
    for item in ITEMS:
        by_state.setdefault(outcome[item], []).append(item)
    out("; ".join(f"{state}: {', '.join(items)}" for state, items in sorted(
        by_state.items(), key=lambda pair: STATES.index(pair[0]))))
    out(network_line(vpc, lake, aws.region))
    if vpc["SubnetIds"] and not package.has_httpfs:
        out("note: without internet egress the function cannot install httpfs at cold start; deploy a package "
            "with httpfs, or give the VPC a NAT route")
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


def network_line(vpc: dict, lake: LakeLocation, region: str) -> str:
    """Where the function's traffic can go, and what the VPC needs for it to reach the lake and nothing else."""
    if not vpc["SubnetIds"]:
        return ("network: the function has Lambda's default internet egress; to take it away, deploy with "
                "--subnet-ids and --security-group-ids of private subnets whose VPC has an S3 gateway endpoint")
    return (f"network: the function is in a VPC (subnets {', '.join(vpc['SubnetIds'])}; security groups "
            f"{', '.join(vpc['SecurityGroupIds'])}): give it an S3 gateway endpoint (com.amazonaws.{region}.s3) for "
            f"the bucket {lake.bucket} on those subnets' route tables, and no NAT route, so the function reaches S3 "
            "and nothing else")


def _ensure_bucket(aws: Aws, lake: LakeLocation, create: bool, out) -> None:
    """The lake's bucket, in the function's region: DuckDB should read the lake from its own region."""
    located = aws.bucket_region(lake.bucket, lake.arn(aws.partition))
    if located is None:
        if not create:
            raise DeployError(f"the bucket {lake.bucket} does not exist: create it, or pass --create-bucket")
        extra = {} if aws.region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": aws.region}}
        aws.call(aws.s3, "create_bucket", lake.arn(aws.partition), Bucket=lake.bucket, **extra)
        out(f"bucket {lake.bucket}: created in {aws.region}")
    elif located != aws.region:
        raise DeployError(f"the bucket {lake.bucket} is in {located} but the function would be in {aws.region}: "
                          f"pass --region {located}, so DuckDB reads the lake from its own region")


def _package(options: DeployOptions, target: Target, source: WheelSource | None, cache_dir, direct_upload_limit: int,
             out) -> tuple[PackageInfo, bool]:
    """The package to deploy, checked against the target and Lambda's limits, and whether it must go through S3."""
    if options.package:
        package = PackageInfo.from_zip(options.package, [f"{options.package} (given)"])
        out(f"package: {package.path} (given)")
    else:
        package = build_package(target, source, cache_dir, log=out)
    package.check_target(target)
    out(f"package contents: {package.contents()}")
    out(f"package size: {package.size_report(direct_upload_limit)}")
    through_s3 = package.upload_method(direct_upload_limit) == "s3"  # or refused: over the unzipped limit
    for note in package.notes:
        out(f"note: {note}")
    if not package.has_httpfs and not package.notes:  # a given package; a built one has said why already
        out("note: the package has no httpfs extension, so the function sets LAKEMAGIC_INSTALL_HTTPFS=1 and installs "
            "it from DuckDB's extension repository into /tmp at each cold start")
    return package, through_s3


def _document(document) -> dict:
    """IAM hands policy documents back URL-encoded (boto3 usually decodes them already)."""
    return json.loads(unquote(document)) if isinstance(document, str) else document


def _ensure_role(aws: Aws, function_name: str) -> tuple[str, str]:
    name = role_name(function_name)
    arn = role_arn(aws.partition, aws.account, function_name)
    found = aws.call(aws.iam, "get_role", arn, absent=("NoSuchEntity",), RoleName=name)
    if found is None:
        created = aws.call(
            aws.iam, "create_role", arn, RoleName=name, Path=ROLE_PATH,
            AssumeRolePolicyDocument=json.dumps(TRUST_POLICY),
            Description=f"lakemagic: the execution role of the Lambda function {function_name}",
            Tags=[{"Key": OWNER_TAG, "Value": function_name}])
        return created["Role"]["Arn"], "created"
    role = found["Role"]
    if not made_by_deploy(role.get("Tags")):
        raise DeployError(f"an IAM role named {name} already exists and was not made by lakemagic deploy (it has no "
                          f"{OWNER_TAG} tag): delete it, or pick another --function-name")
    if _document(role["AssumeRolePolicyDocument"]) != TRUST_POLICY:
        aws.call(aws.iam, "update_assume_role_policy", role["Arn"], RoleName=name, PolicyDocument=json.dumps(TRUST_POLICY))
        return role["Arn"], "updated"
    return role["Arn"], "up to date"


def _ensure_policy(aws: Aws, function_name: str, policy: dict) -> str:
    name = role_name(function_name)
    resource = role_arn(aws.partition, aws.account, function_name)
    found = aws.call(aws.iam, "get_role_policy", resource, absent=("NoSuchEntity",), RoleName=name, PolicyName=POLICY_NAME)
    if found is not None and _document(found["PolicyDocument"]) == policy:
        return "up to date"
    aws.call(aws.iam, "put_role_policy", resource, RoleName=name, PolicyName=POLICY_NAME, PolicyDocument=json.dumps(policy))
    return "created" if found is None else "updated"


def _code_arguments(aws: Aws, package: PackageInfo, lake: LakeLocation, through_s3: bool, out) -> dict:
    """Lambda's Code arguments: the zip itself, or, when it is too big to send, its copy in the lake's bucket."""
    if not through_s3:
        with open(package.path, "rb") as stream:
            return {"ZipFile": stream.read()}
    key = lake.key(f"{DEPLOY_PREFIX}/{package.sha256}.zip")
    arn = f"arn:{aws.partition}:s3:::{lake.bucket}/{key}"
    if aws.call(aws.s3, "head_object", arn, absent=("404", "NoSuchKey", "NotFound"), Bucket=lake.bucket, Key=key) is None:
        with open(package.path, "rb") as stream:
            aws.call(aws.s3, "put_object", arn, Bucket=lake.bucket, Key=key, Body=stream)
    out(f"package uploaded to s3://{lake.bucket}/{key}: the function's code comes from there "
        f"({package.zipped_bytes / MB:.1f} MB is over what a direct upload takes)")
    return {"S3Bucket": lake.bucket, "S3Key": key}


def _ensure_function(aws: Aws, options: DeployOptions, found: dict | None, vpc: dict, target: Target,
                     package: PackageInfo, lake: LakeLocation, role: str, through_s3: bool, role_wait_s: float,
                     out) -> tuple[str, str]:
    """The function's code and configuration, each "created", "updated" or "up to date"; `found` is get_function's."""
    name = options.function_name
    arn = function_arn(aws.partition, aws.region, aws.account, name)
    existing_env = ((found or {}).get("Configuration", {}).get("Environment") or {}).get("Variables") or {}
    environment = options.environment(existing_env, lake, package.has_httpfs)
    configuration = {"Role": role, "Handler": HANDLER, "Runtime": target.runtime, "MemorySize": options.memory,
                     "Timeout": options.timeout, "EphemeralStorage": {"Size": EPHEMERAL_STORAGE_MB},
                     "Environment": {"Variables": environment}, "VpcConfig": vpc}
    if found is None:
        if not vpc["SubnetIds"]:
            del configuration["VpcConfig"]  # a new function is in no VPC unless asked
        code = _code_arguments(aws, package, lake, through_s3, out)
        _create_function(aws, arn, name, configuration, target, code, lake, role_wait_s, out)
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
                 **_code_arguments(aws, package, lake, through_s3, out))
        aws.wait("function_updated_v2", name)
        code_state = "updated"
    present = {"Role": current.get("Role"), "Handler": current.get("Handler"), "Runtime": current.get("Runtime"),
               "MemorySize": current.get("MemorySize"), "Timeout": current.get("Timeout"),
               "EphemeralStorage": {"Size": (current.get("EphemeralStorage") or {}).get("Size", 512)},
               "Environment": {"Variables": existing_env}, "VpcConfig": vpc_config(current.get("VpcConfig"))}
    if present == configuration:
        return code_state, "up to date"
    aws.call_assuming_role("update_function_configuration", arn, role, role_wait_s, out,
                           FunctionName=name, **configuration)
    aws.wait("function_updated_v2", name)
    return code_state, "updated"


def _create_function(aws: Aws, arn: str, name: str, configuration: dict, target: Target, code: dict,
                     lake: LakeLocation, role_wait_s: float, out) -> None:
    aws.call_assuming_role(
        "create_function", arn, configuration["Role"], role_wait_s, out,
        FunctionName=name, PackageType="Zip", Code=code, Architectures=[target.architecture],
        Description=f"lakemagic: DuckDB over {lake.url}", Tags={OWNER_TAG: name}, **configuration)
