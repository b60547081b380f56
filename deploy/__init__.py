"""`lakemagic deploy` and `lakemagic destroy`: the lake handler as an AWS Lambda function, with boto3 only.

    package.py   the deployment zip: lakelambda plus DuckDB's manylinux wheels, reproducible, cached
    aws.py       the execution role and its one policy, the function, the results' lifecycle rule
    cli.py       the two commands, and AWS's failures as one sentence each
    errors.py    DeployError: what a user is shown, one sentence

No Docker and no Node: wheels come from PyPI through `pip download`, and
every AWS call is boto3's.
"""

from .errors import DeployError

# The function `lakemagic deploy` creates, and the Lambda engine's default.
DEFAULT_FUNCTION_NAME = "lakemagic"

__all__ = ["DEFAULT_FUNCTION_NAME", "DeployError"]
