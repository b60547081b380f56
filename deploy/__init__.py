"""`lakemagic deploy` and `lakemagic destroy`: the lake handler as an AWS Lambda function, with boto3 only.

    cli.py        the two commands' options (`register` adds them to lakemagic's parser); a failure is one line
    plan.py       what should exist, without AWS: the lake's location, names and ARNs, the policies, the lifecycle rule
    session.py    the boto3 clients, the only code calling AWS; its failures become one DeployError sentence
    deploy.py     creates or updates the role, its policy and the function, only where they differ
    destroy.py    removes what deploy made, never the bucket or its data
    lifecycle.py  the results' lifecycle rule on the lake's bucket, beside the bucket's own rules
    package.py    the deployment zip: lakelambda plus DuckDB's wheels, checked against Lambda's limits, reproducible, cached
    wheels.py     the Lambda runtime a package is for, and its wheels: from PyPI by `pip download`, or as installed here
    errors.py     DeployError: what a user is shown, one sentence

No Docker and no Node: wheels come from PyPI through `pip download`, and
every AWS call is boto3's. Importing this package is cheap; boto3 comes in
with session.py, when a command runs.
"""

from lakelambda import DEFAULT_FUNCTION_NAME

from .errors import DeployError

# What deploy asks Lambda for unless told otherwise (the command line's defaults too).
DEFAULT_RUNTIME = "python3.12"
DEFAULT_ARCHITECTURE = "x86_64"
DEFAULT_MEMORY_MB = 2048
DEFAULT_TIMEOUT_S = 300
# The function's /tmp: half for DuckDB's spill (a result is held in memory and spill while it is
# written), a quarter for local copies of results, the rest for pages. Big results go straight to S3.
EPHEMERAL_STORAGE_MB = 4096

__all__ = ["DEFAULT_ARCHITECTURE", "DEFAULT_FUNCTION_NAME", "DEFAULT_MEMORY_MB", "DEFAULT_RUNTIME",
           "DEFAULT_TIMEOUT_S", "EPHEMERAL_STORAGE_MB", "DeployError"]
