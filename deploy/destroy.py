"""`lakemagic destroy`: take away what deploy made, and nothing it did not.

The function, its role and the role's policy, its log group, the results'
lifecycle rule and any package deploy uploaded go; the bucket and the lake's
data stay. A function or role without deploy's tag is left alone, and
anything already gone is said to be.
"""

from __future__ import annotations

from .errors import DeployError
from .lifecycle import remove_lifecycle_rule
from .plan import (
    DEPLOY_PREFIX, LAKE_VARIABLE, OWNER_TAG, POLICY_NAME, DestroyOptions, LakeLocation, check_function_name,
    function_arn, log_group_name, made_by_deploy, role_arn, role_name,
)
from .session import ACCESS_DENIED, Aws


def destroy(options: DestroyOptions, *, aws: Aws | None = None, out=print) -> dict:
    """Remove the function, its role and policy, its log group and the lifecycle rule; keep the bucket and its data.

    `aws` defaults to the account and region of `options.region` and `options.profile`.
    """
    lake = LakeLocation.parse(options.lake) if options.lake else None
    check_function_name(options.function_name)
    if aws is None:
        aws = Aws.connect(options.region, options.profile)
    aws.whoami()
    name = options.function_name
    outcome = {}

    outcome["function"], lake = _remove_function(aws, name, lake)
    outcome["role"], outcome["policy"] = _remove_role(aws, name)

    if lake is None:
        out("no --lake given and no function to read it from: a lifecycle rule lakemagic deploy added, if any, is left")
        outcome["lifecycle rule"] = "unknown"
    else:
        outcome["lifecycle rule"] = remove_lifecycle_rule(aws, lake)
        _remove_uploaded_packages(aws, lake, out)
    outcome["log group"] = _remove_log_group(aws, name, out)

    removed = [item for item, state in outcome.items() if state == "removed"]
    gone = [item for item, state in outcome.items() if state == "already gone"]
    kept = f"kept: the bucket {lake.bucket} and its data" if lake else "kept: the lake's bucket and its data"
    if removed:
        out(f"removed: {', '.join(removed)}" + (f"; already gone: {', '.join(gone)}" if gone else "") + f"; {kept}")
    else:
        out(f"nothing to remove: {', '.join(gone)} already gone; {kept}")
    return outcome


def _remove_function(aws: Aws, name: str, lake: LakeLocation | None) -> tuple[str, LakeLocation | None]:
    """"removed" or "already gone", and the lake: `lake`, else the one the function was deployed over."""
    arn = function_arn(aws.partition, aws.region, aws.account, name)
    found = aws.call(aws.lam, "get_function", arn, absent=("ResourceNotFoundException",), FunctionName=name)
    if found is None:
        return "already gone", lake
    if not made_by_deploy(found.get("Tags")):
        raise DeployError(f"the function {name} was not created by lakemagic deploy (it has no {OWNER_TAG} tag), "
                          "so destroy leaves it alone")
    variables = (found["Configuration"].get("Environment") or {}).get("Variables") or {}
    if lake is None and variables.get(LAKE_VARIABLE):
        lake = LakeLocation.parse(variables[LAKE_VARIABLE])
    aws.call(aws.lam, "delete_function", arn, absent=("ResourceNotFoundException",), FunctionName=name)
    return "removed", lake


def _remove_role(aws: Aws, function_name: str) -> tuple[str, str]:
    """What became of the role and of its policy: "removed" or "already gone"."""
    role, arn = role_name(function_name), role_arn(aws.partition, aws.account, function_name)
    found = aws.call(aws.iam, "get_role", arn, absent=("NoSuchEntity",), RoleName=role)
    if found is None:
        return "already gone", "already gone"
    if not made_by_deploy(found["Role"].get("Tags")):
        raise DeployError(f"the IAM role {role} was not made by lakemagic deploy (it has no {OWNER_TAG} tag), so "
                          "destroy leaves it alone")
    policy = aws.call(aws.iam, "delete_role_policy", arn, absent=("NoSuchEntity",), RoleName=role,
                      PolicyName=POLICY_NAME)
    _, refused = aws.call_or_code(aws.iam, "delete_role", arn, ("DeleteConflict", "NoSuchEntity"), RoleName=role)
    if refused == "DeleteConflict":
        raise DeployError(f"the IAM role {role} has policies lakemagic did not put there; detach them and "
                          "run destroy again")
    return "removed", "removed" if policy is not None else "already gone"


def _remove_log_group(aws: Aws, function_name: str, out) -> str:
    """"removed", "already gone", or "kept" when the deploying user may not delete it."""
    log_group = log_group_name(function_name)
    _, refused = aws.call_or_code(aws.logs, "delete_log_group", log_group, ("ResourceNotFoundException", *ACCESS_DENIED),
                                  logGroupName=log_group)
    if refused is None:
        return "removed"
    if refused == "ResourceNotFoundException":
        return "already gone"
    out(f"kept the log group {log_group}: {aws.identity} may not logs:DeleteLogGroup")
    return "kept"


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
