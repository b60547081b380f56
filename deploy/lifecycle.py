"""The results' lifecycle rule on the lake's bucket: deploy adds it, destroy takes it out.

S3 keeps a bucket's lifecycle rules as one document, so both read the
whole of it and write it back with only lakemagic's rule changed: the
bucket's other rules, and its bucket-wide settings, stay as they were.
"""

from __future__ import annotations

from .plan import RESULT_EXPIRY_DAYS, LakeLocation, lifecycle_rule, lifecycle_rule_id
from .session import Aws


def ensure_lifecycle_rule(aws: Aws, lake: LakeLocation, out) -> str:
    """Results expire after a day; "created", "updated" or "up to date"."""
    rule = lifecycle_rule(lake)
    current = _lifecycle(aws, lake, absent=("NoSuchLifecycleConfiguration",))
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


def remove_lifecycle_rule(aws: Aws, lake: LakeLocation) -> str:
    """"removed" or "already gone" (also when the bucket itself is)."""
    current = _lifecycle(aws, lake, absent=("NoSuchLifecycleConfiguration", "NoSuchBucket"))
    rules = (current or {}).get("Rules", [])
    others = [rule for rule in rules if rule.get("ID") != lifecycle_rule_id(lake)]
    if len(others) == len(rules):
        return "already gone"
    _put_rules(aws, lake, current, others)
    return "removed"


def _lifecycle(aws: Aws, lake: LakeLocation, absent: tuple[str, ...]) -> dict | None:
    return aws.call(aws.s3, "get_bucket_lifecycle_configuration", lake.arn(aws.partition), absent=absent,
                    Bucket=lake.bucket)


def _put_rules(aws: Aws, lake: LakeLocation, current: dict | None, rules: list[dict]) -> None:
    if not rules:  # nothing left to keep: the bucket's lifecycle configuration goes
        aws.call(aws.s3, "delete_bucket_lifecycle", lake.arn(aws.partition), Bucket=lake.bucket)
        return
    extra = {}
    if current and current.get("TransitionDefaultMinimumObjectSize"):  # a bucket-wide setting: keep it as it is
        extra["TransitionDefaultMinimumObjectSize"] = current["TransitionDefaultMinimumObjectSize"]
    aws.call(aws.s3, "put_bucket_lifecycle_configuration", lake.arn(aws.partition), Bucket=lake.bucket,
             LifecycleConfiguration={"Rules": rules}, **extra)
