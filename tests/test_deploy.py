"""`lakemagic deploy` / `destroy` against a real AWS API server (moto's, on 127.0.0.1): no mocks of boto3.

One ThreadedMotoServer serves S3, IAM, STS, CloudWatch Logs and the Lambda
control plane. The commands are handed boto3 clients aimed at it (`clients`),
so no AWS_* variable of this process steers them; only the tests of what a
user's shell provides (`user_shell`) go through boto3's own chain. Its Lambda
cannot invoke (that needs Docker), so nothing here invokes: the package's
behaviour inside a function is tests/test_package.py's business. To stay
fast, the package deployed here is built for this machine from the installed
duckdb + httpfs (`InstalledPackages`), and passed with `--package`, as a user
with a prebuilt zip would; the default path (pip download for the Lambda
runtime) is tested in test_package.py.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import urllib.request
import zipfile

import boto3
import pytest
from test_package import FAKE_KEYS, local_package  # noqa: F401 (local_package is a fixture)

from lakedeploy.cli import main, register
from lakedeploy.deploy import _create_function, deploy
from lakedeploy.destroy import destroy
from lakedeploy.errors import DeployError
from lakedeploy.plan import HANDLER, OWNER_TAG, POLICY_NAME, DeployOptions, DestroyOptions, LakeLocation, role_name
from lakedeploy.session import SERVICES, Aws
from lakedeploy.wheels import Target

ACCOUNT = "123456789012"  # moto's
REGION = "eu-west-1"
OTHER_RULE = {"ID": "keep-old-logs", "Filter": {"Prefix": "logs/"}, "Status": "Enabled", "Expiration": {"Days": 30}}


def moto_clients(endpoint: str, region: str = REGION, keys: dict = FAKE_KEYS) -> dict:
    """boto3 clients (by service name) of the identity `keys` names, in `region`, on the server at `endpoint`."""
    session = boto3.Session(region_name=region, **keys)
    return {name: session.client(name, endpoint_url=endpoint) for name in SERVICES}


@pytest.fixture(scope="module")
def clients(moto_endpoint) -> dict:
    return moto_clients(moto_endpoint)


@pytest.fixture
def user_shell(moto_endpoint, monkeypatch, tmp_path):
    """This process's environment as a deploying user's shell would have it, without credentials, aimed at the server."""
    for name in list(os.environ):
        if name.startswith("AWS_"):  # other tests' servers (AWS_ENDPOINT_URL_S3, _LAMBDA) must not win
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)


def make_lake(s3, bucket: str, prefix: str = "lake") -> str:
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_object(Bucket=bucket, Key=f"{prefix}/dataset/trips.parquet", Body=b"PAR1 pretend")
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [OTHER_RULE]})
    return f"s3://{bucket}/{prefix}"


def run(capsys, clients: dict, *argv) -> tuple[int, str, str]:
    """The command as `lakemagic` parses and runs it, on `clients` instead of the ones --region and --profile name."""
    parser = argparse.ArgumentParser(prog="lakemagic")
    register(parser.add_subparsers(dest="command", required=True), aws=Aws(clients=clients))
    options = parser.parse_args(list(argv))
    status = options.run(options)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def run_in_shell(capsys, *argv) -> tuple[int, str, str]:
    """The command as `lakemagic` runs it, on the clients boto3 makes from the environment."""
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def deploy_args(lake: str, package: str, *extra: str) -> list[str]:
    return ["deploy", "--lake", lake, "--package", package, "--runtime", Target.local().runtime,
            "--architecture", Target.local().architecture, *extra]


def code_sha256(path: str) -> str:
    with open(path, "rb") as stream:
        return base64.b64encode(hashlib.sha256(stream.read()).digest()).decode()


def test_deploy_redeploy_destroy(clients, local_package, capsys):
    iam, lam, s3 = clients["iam"], clients["lambda"], clients["s3"]
    lake = make_lake(s3, "deploy-lake")

    status, out, err = run(capsys, clients, *deploy_args(lake, local_package, "--region", REGION))
    assert (status, err) == (0, "")
    assert "created: role, policy, function code, configuration, lifecycle rule" in out
    assert out.rstrip().endswith('%config LakeMagic.engine = "lambda"\n'
                                 '    %config LakeMagic.function_name = "lakemagic"\n'
                                 f'    %config LakeMagic.region = "{REGION}"')
    assert "MB zipped" in out and "MB unzipped" in out

    # The role: Lambda may assume it, and it carries exactly one inline policy.
    role = iam.get_role(RoleName=role_name("lakemagic"))["Role"]
    assert role["AssumeRolePolicyDocument"] == {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    assert {tag["Key"]: tag["Value"] for tag in role["Tags"]} == {OWNER_TAG: "lakemagic"}
    assert iam.list_role_policies(RoleName=role["RoleName"])["PolicyNames"] == [POLICY_NAME]
    assert iam.list_attached_role_policies(RoleName=role["RoleName"])["AttachedPolicies"] == []

    # The policy: named actions only, each on the lake's prefixes or the function's log group.
    statements = iam.get_role_policy(RoleName=role["RoleName"], PolicyName=POLICY_NAME)["PolicyDocument"]["Statement"]
    granted = {}
    for statement in statements:
        assert statement["Effect"] == "Allow"
        for action in statement["Action"]:
            assert "*" not in action
            for resource in statement["Resource"]:
                assert resource != "*"
                granted.setdefault(action, set()).add(resource)
    log_group = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/lakemagic"
    assert granted == {
        "s3:GetObject": {"arn:aws:s3:::deploy-lake/lake/*"},
        "s3:ListBucket": {"arn:aws:s3:::deploy-lake"},
        "s3:PutObject": {"arn:aws:s3:::deploy-lake/lake/_lakemagic/results/*", "arn:aws:s3:::deploy-lake/lake/dashboard/*"},
        "logs:CreateLogGroup": {log_group, log_group + ":*"},
        "logs:CreateLogStream": {log_group, log_group + ":*"},
        "logs:PutLogEvents": {log_group, log_group + ":*"},
    }
    listing = next(statement for statement in statements if statement["Action"] == ["s3:ListBucket"])
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["lake/", "lake/*"]}}

    # The function.
    function = lam.get_function(FunctionName="lakemagic")
    config = function["Configuration"]
    assert config["Handler"] == "lakelambda.handler.handler"
    assert config["Runtime"] == Target.local().runtime
    assert (config["MemorySize"], config["Timeout"]) == (2048, 300)
    assert config["Architectures"] == [Target.local().architecture]
    assert config["Environment"]["Variables"] == {"LAKEMAGIC_LAKE": lake}
    assert config["Role"] == role["Arn"]
    assert config["State"] == "Active" and config["LastUpdateStatus"] == "Successful"
    assert config["CodeSha256"] == code_sha256(local_package)
    assert function["Tags"][OWNER_TAG] == "lakemagic"

    # The lifecycle rule, beside the bucket's own rule.
    rules = s3.get_bucket_lifecycle_configuration(Bucket="deploy-lake")["Rules"]
    assert OTHER_RULE in rules
    ours = [rule for rule in rules if rule["ID"] != OTHER_RULE["ID"]]
    assert ours == [{"ID": "lakemagic-results:lake", "Filter": {"Prefix": "lake/_lakemagic/results/"},
                     "Status": "Enabled", "Expiration": {"Days": 1}}]

    # Again: nothing changes, and it says so.
    status, out, err = run(capsys, clients, *deploy_args(lake, local_package, "--region", REGION))
    assert (status, err) == (0, "")
    assert "up to date: role, policy, function code, configuration, lifecycle rule" in out
    assert "created" not in out and "updated" not in out
    again = lam.get_function(FunctionName="lakemagic")["Configuration"]
    assert (again["CodeSha256"], again["LastModified"]) == (config["CodeSha256"], config["LastModified"])
    assert s3.get_bucket_lifecycle_configuration(Bucket="deploy-lake")["Rules"] == rules

    # A changed setting updates the configuration only.
    status, out, _ = run(capsys, clients, *deploy_args(lake, local_package, "--memory", "3008", "--timeout", "120"))
    assert status == 0
    assert "updated: configuration; up to date: role, policy, function code, lifecycle rule" in out
    assert "LakeMagic.region" not in out  # not given this time
    changed = lam.get_function(FunctionName="lakemagic")["Configuration"]
    assert (changed["MemorySize"], changed["Timeout"], changed["CodeSha256"]) == (3008, 120, config["CodeSha256"])

    # Destroy: function, role, policy and rule go; the bucket, its data and its own rule stay.
    status, out, err = run(capsys, clients, "destroy", "--region", REGION)
    assert (status, err) == (0, "")
    assert "removed: function, role, policy, lifecycle rule" in out
    assert "kept: the bucket deploy-lake and its data" in out
    assert lam.list_functions()["Functions"] == []
    assert role_name("lakemagic") not in [role["RoleName"] for role in iam.list_roles()["Roles"]]
    assert s3.get_bucket_lifecycle_configuration(Bucket="deploy-lake")["Rules"] == [OTHER_RULE]
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket="deploy-lake")["Contents"]]
    assert keys == ["lake/dataset/trips.parquet"]

    status, out, err = run(capsys, clients, "destroy", "--region", REGION, "--lake", lake)
    assert (status, err) == (0, "")
    assert "nothing to remove: function, role, policy, lifecycle rule, log group already gone" in out
    assert s3.get_bucket_lifecycle_configuration(Bucket="deploy-lake")["Rules"] == [OTHER_RULE]


def test_lake_at_bucket_root_and_created_bucket(clients, local_package, capsys):
    status, out, err = run(capsys, clients, *deploy_args("s3://fresh-lake", local_package, "--create-bucket",
                                                "--function-name", "root-lake", "--memory", "1024"))
    assert (status, err) == (0, "")
    assert "bucket fresh-lake: created in eu-west-1" in out
    s3, iam = clients["s3"], clients["iam"]
    assert s3.head_bucket(Bucket="fresh-lake")["ResponseMetadata"]["HTTPHeaders"]["x-amz-bucket-region"] == REGION
    statements = iam.get_role_policy(RoleName=role_name("root-lake"), PolicyName=POLICY_NAME)["PolicyDocument"]["Statement"]
    resources = {resource for statement in statements for resource in statement["Resource"]}
    assert {"arn:aws:s3:::fresh-lake/*", "arn:aws:s3:::fresh-lake", "arn:aws:s3:::fresh-lake/_lakemagic/results/*",
            "arn:aws:s3:::fresh-lake/dashboard/*"} <= resources
    assert s3.get_bucket_lifecycle_configuration(Bucket="fresh-lake")["Rules"] == [
        {"ID": "lakemagic-results", "Filter": {"Prefix": "_lakemagic/results/"}, "Status": "Enabled",
         "Expiration": {"Days": 1}}]
    assert run(capsys, clients, "destroy", "--function-name", "root-lake")[0] == 0
    with pytest.raises(s3.exceptions.ClientError, match="NoSuchLifecycleConfiguration"):
        s3.get_bucket_lifecycle_configuration(Bucket="fresh-lake")
    s3.head_bucket(Bucket="fresh-lake")  # still there


def test_package_over_the_direct_upload_limit_goes_through_the_lake_bucket(clients, local_package):
    s3, lam = clients["s3"], clients["lambda"]
    lake = make_lake(s3, "big-package-lake")
    lines = []
    options = DeployOptions(lake=lake, function_name="via-s3", package=local_package,
                            runtime=Target.local().runtime, architecture=Target.local().architecture)
    deploy(options, aws=Aws(clients=clients), out=lines.append, direct_upload_limit=1_000_000)
    with open(local_package, "rb") as stream:
        sha = hashlib.sha256(stream.read()).hexdigest()
    key = f"lake/_lakemagic/deploy/{sha}.zip"
    assert any(f"package uploaded to s3://big-package-lake/{key}" in line for line in lines)
    assert any("over the 1 MB Lambda takes in a direct upload, so it goes through S3" in line for line in lines)
    assert s3.head_object(Bucket="big-package-lake", Key=key)["ContentLength"] == os.path.getsize(local_package)
    assert lam.get_function(FunctionName="via-s3")["Configuration"]["CodeSha256"] == code_sha256(local_package)

    lines.clear()
    deploy(options, aws=Aws(clients=clients), out=lines.append, direct_upload_limit=1_000_000)
    assert "up to date: role, policy, function code, configuration, lifecycle rule" in lines

    destroy(DestroyOptions(function_name="via-s3"), aws=Aws(clients=clients), out=lines.append)
    assert s3.list_objects_v2(Bucket="big-package-lake", Prefix="lake/_lakemagic/")["KeyCount"] == 0
    assert s3.head_object(Bucket="big-package-lake", Key="lake/dataset/trips.parquet")


def test_package_without_httpfs_installs_it_at_cold_start(clients, local_package, capsys, tmp_path):
    """Where no httpfs wheel exists for the target, the function is told to install httpfs itself."""
    without = tmp_path / "no-httpfs.zip"
    with zipfile.ZipFile(local_package) as source, zipfile.ZipFile(without, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as target:
        for entry in source.infolist():
            if not entry.filename.startswith("duckdb_extension_httpfs"):
                target.writestr(entry, source.read(entry))
    lake = make_lake(clients["s3"], "no-httpfs-lake")
    status, out, err = run(capsys, clients, *deploy_args(lake, str(without), "--function-name", "no-httpfs"))
    assert (status, err) == (0, "")
    assert "LAKEMAGIC_INSTALL_HTTPFS=1" in out and "cold start" in out
    variables = clients["lambda"].get_function(FunctionName="no-httpfs")["Configuration"]["Environment"]["Variables"]
    assert variables == {"LAKEMAGIC_LAKE": lake, "LAKEMAGIC_INSTALL_HTTPFS": "1"}

    # With httpfs in the package again, the variable goes and the code is updated.
    status, out, _ = run(capsys, clients, *deploy_args(lake, local_package, "--function-name", "no-httpfs"))
    assert "updated: function code, configuration; up to date: role, policy, lifecycle rule" in out
    variables = clients["lambda"].get_function(FunctionName="no-httpfs")["Configuration"]["Environment"]["Variables"]
    assert variables == {"LAKEMAGIC_LAKE": lake}


def one_sentence(err: str, command: str = "deploy") -> str:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"lakemagic {command}: ")
    return lines[0][len(f"lakemagic {command}: "):]


def test_no_credentials(user_shell, local_package, capsys):
    status, _, err = run_in_shell(capsys, *deploy_args("s3://deploy-lake", local_package))
    assert status == 1
    assert one_sentence(err).startswith("no AWS credentials found: set AWS_PROFILE")
    status, _, err = run_in_shell(capsys, "destroy")
    assert status == 1 and one_sentence(err, "destroy").startswith("no AWS credentials found")


def test_refused_credentials(user_shell, moto_endpoint, local_package, monkeypatch, capsys):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIANOTAREALKEY00000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_KEYS["aws_secret_access_key"])
    _refuse_unknown_keys(moto_endpoint)
    try:
        status, _, err = run_in_shell(capsys, *deploy_args("s3://deploy-lake", local_package))
    finally:
        _stop_checking_keys(moto_endpoint)
    assert status == 1
    assert one_sentence(err) == ("AWS refused the credentials (InvalidClientTokenId): check AWS_PROFILE or the "
                                 "access keys, or sign in again")


def test_missing_bucket(clients, local_package, capsys):
    status, _, err = run(capsys, clients, *deploy_args("s3://no-such-lake/data", local_package))
    assert status == 1
    assert one_sentence(err) == "the bucket no-such-lake does not exist: create it, or pass --create-bucket"
    functions = [function["FunctionName"] for function in clients["lambda"].list_functions()["Functions"]]
    roles = [role["RoleName"] for role in clients["iam"].list_roles()["Roles"]]
    assert "lakemagic" not in functions and role_name("lakemagic") not in roles  # stopped before touching anything


def test_bucket_in_another_region(clients, moto_endpoint, local_package, capsys):
    moto_clients(moto_endpoint, region="us-west-2")["s3"].create_bucket(
        Bucket="west-lake", CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    status, _, err = run(capsys, clients, *deploy_args("s3://west-lake", local_package))
    assert status == 1
    assert one_sentence(err) == ("the bucket west-lake is in us-west-2 but the function would be in eu-west-1: "
                                 "pass --region us-west-2, so DuckDB reads the lake from its own region")


@pytest.mark.parametrize("lake, problem", [
    ("/home/me/lake", ""),
    ("s3://", ": '' is not a valid S3 bucket name"),
    ("s3://My_Bucket/lake", ": 'My_Bucket' is not a valid S3 bucket name"),
    ("s3://ok-bucket/lake*", ": the prefix may hold only letters"),
    ("s3://ok-bucket/a/../b", ": the prefix may hold only letters"),
])
def test_bad_lake(clients, capsys, lake, problem):
    status, _, err = run(capsys, clients, "deploy", "--lake", lake)
    assert status == 1
    sentence = one_sentence(err)
    assert sentence.startswith(f"--lake must be an S3 location like s3://BUCKET or s3://BUCKET/prefix, not {lake!r}{problem}")


def test_package_for_another_runtime_is_refused(clients, local_package, capsys):
    make_lake(clients["s3"], "mismatch-lake")
    other = "python3.13" if Target.local().runtime != "python3.13" else "python3.12"
    status, _, err = run(capsys, clients, "deploy", "--lake", "s3://mismatch-lake/lake", "--package", local_package,
                         "--runtime", other, "--architecture", Target.local().architecture)
    assert status == 1
    assert f"but the function would run {other} on {Target.local().architecture}: pass --runtime" in one_sentence(err)


def test_access_denied_names_the_missing_permission(clients, moto_endpoint, local_package, capsys):
    """A deploying user without iam:PutRolePolicy: moto enforces IAM, and the error says what is missing."""
    make_lake(clients["s3"], "denied-lake")
    iam = clients["iam"]
    iam.create_user(UserName="deployer")
    allowed = ["sts:GetCallerIdentity", "s3:ListBucket", "s3:HeadBucket",  # moto checks HeadBucket by that name
               "iam:GetRole", "iam:CreateRole", "iam:TagRole", "iam:GetRolePolicy"]
    iam.put_user_policy(UserName="deployer", PolicyName="almost", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": allowed, "Resource": "*"}]}))
    key = iam.create_access_key(UserName="deployer")["AccessKey"]
    deployer = moto_clients(moto_endpoint, keys={"aws_access_key_id": key["AccessKeyId"],
                                                 "aws_secret_access_key": key["SecretAccessKey"]})
    _refuse_unknown_keys(moto_endpoint)
    try:
        status, _, err = run(capsys, deployer, *deploy_args("s3://denied-lake/lake", local_package, "--function-name", "denied"))
    finally:
        _stop_checking_keys(moto_endpoint)
    assert status == 1
    assert one_sentence(err) == (
        f"access denied: arn:aws:iam::{ACCOUNT}:user/deployer may not iam:PutRolePolicy on "
        f"arn:aws:iam::{ACCOUNT}:role/lakemagic/{role_name('denied')}; grant it that permission "
        "(README, \"Deploy to AWS\", lists what deploy needs)")


def test_create_function_waits_for_the_role_then_gives_up_in_one_sentence(clients, tmp_path):
    """Lambda's "role cannot be assumed" (a role IAM has not spread yet) is retried with backoff, within a bound."""
    client = Aws(clients=clients)
    client.whoami()
    missing_role = f"arn:aws:iam::{ACCOUNT}:role/lakemagic/not-there-yet"
    said = []
    with zipfile.ZipFile(tmp_path / "tiny.zip", "w") as tiny:
        tiny.writestr("lakelambda/handler.py", "def handler(event, context):\n    return {}\n")
    code = {"ZipFile": (tmp_path / "tiny.zip").read_bytes()}
    with pytest.raises(DeployError, match=r"Lambda still cannot assume the role .*not-there-yet after 2 s; run deploy again"):
        _create_function(client, "arn", "never", {"Role": missing_role, "Handler": HANDLER, "Runtime": Target.local().runtime},
                         Target.local(), code, LakeLocation("deploy-lake", ""), 2.0, said.append)
    assert said == ["waiting for the new role to reach Lambda (IAM takes a few seconds to propagate)..."]


def _refuse_unknown_keys(endpoint: str) -> None:
    """From now on moto checks every request's keys and IAM policies, as AWS does."""
    _reset_auth(endpoint, "0")


def _stop_checking_keys(endpoint: str) -> None:
    _reset_auth(endpoint, "inf")


def _reset_auth(endpoint: str, count: str) -> None:
    request = urllib.request.Request(f"{endpoint}/moto-api/reset-auth", data=count.encode(), method="POST",
                                     headers={"Content-Type": "text/plain"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200
