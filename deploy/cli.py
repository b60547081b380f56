"""`lakemagic deploy` and `lakemagic destroy` (dispatched here by `lakemagic.cli`)."""

from __future__ import annotations

import argparse
import sys

from botocore.exceptions import BotoCoreError

from lakemagic.engine import DEFAULT_FUNCTION_NAME

from .errors import DeployError


def main(argv: list[str] | None = None) -> int:
    """`argv` starts with the command, "deploy" or "destroy"; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    options = parser().parse_args(argv)
    from .aws import DeployOptions, DestroyOptions, deploy, destroy

    try:
        if options.command == "deploy":
            deploy(DeployOptions(
                lake=options.lake, region=options.region, profile=options.profile, function_name=options.function_name,
                memory=options.memory, timeout=options.timeout, architecture=options.architecture,
                runtime=options.runtime, create_bucket=options.create_bucket, package=options.package))
        else:
            destroy(DestroyOptions(function_name=options.function_name, region=options.region,
                                   profile=options.profile, lake=options.lake))
    except DeployError as exc:
        print(f"lakemagic {options.command}: {exc}", file=sys.stderr)
        return 1
    except BotoCoreError as exc:  # what the AWS calls did not turn into a sentence themselves
        print(f"lakemagic {options.command}: an AWS call failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"lakemagic {options.command}: interrupted; run it again to finish (it picks up where it stopped)",
              file=sys.stderr)
        return 130
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="lakemagic")
    commands = top.add_subparsers(dest="command", required=True)

    deploy = commands.add_parser(
        "deploy", help="create or update the Lambda function, its role and the results' lifecycle rule",
        description="Build the handler's package (DuckDB wheels from PyPI, no Docker), then create or update the "
                    "function, its IAM role and policy, and the lifecycle rule that expires results after a day. "
                    "Running it again changes only what differs, and says what is up to date.")
    deploy.add_argument("--lake", required=True, help="the lake: s3://BUCKET[/prefix]")
    _common(deploy)
    deploy.add_argument("--memory", type=int, default=2048, help="MB (default: %(default)s; 1,769 MB is one vCPU)")
    deploy.add_argument("--timeout", type=int, default=300, help="seconds, at most 900 (default: %(default)s)")
    deploy.add_argument("--architecture", choices=("x86_64", "arm64"), default="x86_64",
                        help="default: %(default)s (arm64 costs 20%% less per GB-second)")
    deploy.add_argument("--runtime", default="python3.12", help="a Lambda Python runtime (default: %(default)s)")
    deploy.add_argument("--create-bucket", action="store_true", help="create the lake's bucket if it does not exist")
    deploy.add_argument("--package", metavar="ZIP",
                        help="deploy this zip instead of building one (it must match --runtime and --architecture)")

    destroy = commands.add_parser(
        "destroy", help="remove what deploy created, except the bucket and its data",
        description="Remove the function, its role and policy, its log group, the results' lifecycle rule and any "
                    "package deploy uploaded. The bucket and the lake's data stay.")
    destroy.add_argument("--lake", help="the lake, for its lifecycle rule (default: read from the function)")
    _common(destroy)
    return top


def _common(command: argparse.ArgumentParser) -> None:
    command.add_argument("--function-name", default=DEFAULT_FUNCTION_NAME, help="default: %(default)s")
    command.add_argument("--region", help="the AWS region (default: boto3's: AWS_DEFAULT_REGION or the profile's)")
    command.add_argument("--profile", help="an AWS profile (default: boto3's, e.g. AWS_PROFILE)")


if __name__ == "__main__":
    sys.exit(main())
