"""`lakemagic deploy` and `lakemagic destroy`: their options, and how a failure reaches the user.

`register` adds both commands to the `lakemagic` parser; `main` is a parser
with these two alone. Importing this module stays cheap: boto3 and the rest
of lakedeploy are imported when a command runs.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from lakelambda.protocol import LAMBDA_ARCHITECTURES

from . import DEFAULT_ARCHITECTURE, DEFAULT_FUNCTION_NAME, DEFAULT_MEMORY_MB, DEFAULT_RUNTIME, DEFAULT_TIMEOUT_S
from .errors import DeployError

if TYPE_CHECKING:
    from .session import Aws


def register(commands, aws: Aws | None = None) -> None:
    """Add `deploy` and `destroy` to argparse subparsers; each sets `run(options)`, which returns the exit status.

    Both commands use `aws` if given, instead of the account and region that
    --profile, --region and boto3's usual chain name.
    """
    deploy = commands.add_parser(
        "deploy", help="create or update the Lambda function, its role and the results' lifecycle rule",
        description="Build the handler's package (DuckDB wheels from PyPI, no Docker), then create or update the "
                    "function, its IAM role and policy, and the lifecycle rule that expires results after a day. "
                    "Running it again changes only what differs, and says what is up to date. The function has "
                    "Lambda's default internet egress unless --subnet-ids and --security-group-ids put it in a VPC.")
    deploy.add_argument("--lake", required=True, help="the lake: s3://BUCKET[/prefix]")
    _common(deploy)
    deploy.add_argument("--memory", type=int, default=DEFAULT_MEMORY_MB,
                        help="MB (default: %(default)s; 1,769 MB is one vCPU)")
    deploy.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT_S,
                        help="seconds, at most 900 (default: %(default)s)")
    deploy.add_argument("--architecture", choices=tuple(LAMBDA_ARCHITECTURES.values()), default=DEFAULT_ARCHITECTURE,
                        help="default: %(default)s (arm64 costs 20%% less per GB-second)")
    deploy.add_argument("--runtime", default=DEFAULT_RUNTIME, help="a Lambda Python runtime (default: %(default)s)")
    deploy.add_argument("--create-bucket", action="store_true", help="create the lake's bucket if it does not exist")
    deploy.add_argument("--package", metavar="ZIP",
                        help="deploy this zip instead of building one (it must match --runtime and --architecture)")
    deploy.add_argument("--max-result-bytes", type=int, metavar="BYTES",
                        help="the most one query's result may hold in the engine (its rows in DuckDB's memory and "
                             "spill); a bigger result is refused with an error suggesting LIMIT or --save NAME "
                             "--materialize. Sets LAKEMAGIC_MAX_RESULT_BYTES on the function; without it the function "
                             "keeps the value it has, else the engine's default of 8 GiB")
    deploy.add_argument("--subnet-ids", metavar="ID[,ID...]", type=_ids, default=(),
                        help="put the function in a VPC, in these subnets (with --security-group-ids); without "
                             "either option a redeploy leaves the function's VPC settings as they are")
    deploy.add_argument("--security-group-ids", metavar="ID[,ID...]", type=_ids, default=(),
                        help="the function's security groups in that VPC (with --subnet-ids)")
    deploy.add_argument("--no-vpc", action="store_true",
                        help="take the function out of its VPC, back to Lambda's default internet egress")
    deploy.set_defaults(run=lambda options: _run_deploy(options, aws))

    destroy = commands.add_parser(
        "destroy", help="remove what deploy created, except the bucket and its data",
        description="Remove the function, its role and policy, its log group, the results' lifecycle rule and any "
                    "package deploy uploaded. The bucket and the lake's data stay.")
    destroy.add_argument("--lake", help="the lake, for its lifecycle rule (default: read from the function)")
    _common(destroy)
    destroy.set_defaults(run=lambda options: _run_destroy(options, aws))


def main(argv: list[str] | None = None) -> int:
    """`argv` starts with the command, "deploy" or "destroy"; returns the exit status."""
    parser = argparse.ArgumentParser(prog="lakemagic")
    register(parser.add_subparsers(dest="command", required=True))
    options = parser.parse_args(sys.argv[1:] if argv is None else argv)
    return options.run(options)


def _common(command: argparse.ArgumentParser) -> None:
    command.add_argument("--function-name", default=DEFAULT_FUNCTION_NAME, help="default: %(default)s")
    command.add_argument("--region", help="the AWS region (default: boto3's: AWS_DEFAULT_REGION or the profile's)")
    command.add_argument("--profile", help="an AWS profile (default: boto3's, e.g. AWS_PROFILE)")


def _ids(text: str) -> list[str]:
    """ID[,ID...] as a list; plan.py checks each one."""
    return [item.strip() for item in text.split(",")]


def _run_deploy(options: argparse.Namespace, aws: Aws | None) -> int:
    from .deploy import deploy
    from .plan import DeployOptions

    return _reported("deploy", lambda: deploy(DeployOptions(
        lake=options.lake, region=options.region, profile=options.profile, function_name=options.function_name,
        memory=options.memory, timeout=options.timeout, architecture=options.architecture, runtime=options.runtime,
        create_bucket=options.create_bucket, package=options.package, subnet_ids=options.subnet_ids,
        security_group_ids=options.security_group_ids, no_vpc=options.no_vpc,
        max_result_bytes=options.max_result_bytes), aws=aws))


def _run_destroy(options: argparse.Namespace, aws: Aws | None) -> int:
    from .destroy import destroy
    from .plan import DestroyOptions

    return _reported("destroy", lambda: destroy(DestroyOptions(
        function_name=options.function_name, region=options.region, profile=options.profile, lake=options.lake),
        aws=aws))


def _reported(command: str, work) -> int:
    """Run `work`: a DeployError or an interrupt becomes one line on stderr, and the exit status says which."""
    try:
        work()
    except DeployError as error:
        print(f"lakemagic {command}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"lakemagic {command}: interrupted; run it again to finish (it picks up where it stopped)",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
