"""`lakemagic deploy` / `destroy` against a real AWS API server (moto's, on 127.0.0.1): no mocks of boto3.

One ThreadedMotoServer serves S3, IAM, STS, CloudWatch Logs, EC2 (for the
VPC a function may go in) and the Lambda control plane. The commands are
handed boto3 clients aimed at it (`clients`), so no AWS_* variable of this
process steers them; only the tests of what a user's shell provides
(`user_shell`) go through boto3's own chain. Its Lambda
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
from servers import FAKE_KEYS

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


def granted(iam, function_name: str = "lakemagic") -> dict:
    """The role's inline policy as {action: resources}, checked: Allow only, named actions, no "*" resource but one."""
    statements = iam.get_role_policy(RoleName=role_name(function_name), PolicyName=POLICY_NAME)["PolicyDocument"]["Statement"]
    actions = {}
    for statement in statements:
        assert statement["Effect"] == "Allow"
        for action in statement["Action"]:
            assert "*" not in action
            for resource in statement["Resource"]:
                # ec2:DescribeNetworkInterfaces (a function in a VPC) has no resource-level permissions: "*" or nothing.
                assert resource != "*" or action == "ec2:DescribeNetworkInterfaces"
                actions.setdefault(action, set()).add(resource)
    return actions


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
    assert "with httpfs, avro, iceberg, delta extensions, and the handler" in out  # what it shipped
    assert ("network: the function has Lambda's default internet egress; to take it away, deploy with --subnet-ids "
            "and --security-group-ids") in out

    # The role: Lambda may assume it, and it carries exactly one inline policy.
    role = iam.get_role(RoleName=role_name("lakemagic"))["Role"]
    assert role["AssumeRolePolicyDocument"] == {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    assert {tag["Key"]: tag["Value"] for tag in role["Tags"]} == {OWNER_TAG: "lakemagic"}
    assert iam.list_role_policies(RoleName=role["RoleName"])["PolicyNames"] == [POLICY_NAME]
    assert iam.list_attached_role_policies(RoleName=role["RoleName"])["AttachedPolicies"] == []

    # The policy: named actions only, each on the lake's prefixes or the function's log group.
    log_group = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/lakemagic"
    assert granted(iam) == {
        "s3:GetObject": {"arn:aws:s3:::deploy-lake/lake/*"},
        "s3:ListBucket": {"arn:aws:s3:::deploy-lake"},
        "s3:PutObject": {"arn:aws:s3:::deploy-lake/lake/_lakemagic/results/*", "arn:aws:s3:::deploy-lake/lake/dashboard/*"},
        "logs:CreateLogGroup": {log_group, log_group + ":*"},
        "logs:CreateLogStream": {log_group, log_group + ":*"},
        "logs:PutLogEvents": {log_group, log_group + ":*"},
    }
    statements = iam.get_role_policy(RoleName=role["RoleName"], PolicyName=POLICY_NAME)["PolicyDocument"]["Statement"]
    listing = next(statement for statement in statements if statement["Action"] == ["s3:ListBucket"])
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["lake/", "lake/*"]}}

    # The function.
    function = lam.get_function(FunctionName="lakemagic")
    config = function["Configuration"]
    assert config["Handler"] == "lakelambda.handler.handler"
    assert config["Runtime"] == Target.local().runtime
    assert (config["MemorySize"], config["Timeout"]) == (2048, 300)
    assert config["EphemeralStorage"] == {"Size": 4096}  # DuckDB's spill and local result copies
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
                     "Status": "Enabled", "Expiration": {"Days": 1},
                     "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}]

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
         "Expiration": {"Days": 1}, "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}]
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
    assert any("4096 MB of /tmp" in line for line in lines)  # deploy says what ephemeral storage it gives
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


def test_redeploy_keeps_the_operators_variables_and_sets_max_result_bytes(clients, local_package, capsys):
    """Variables deploy does not set survive a redeploy; --max-result-bytes reaches the function and then stays."""
    lam = clients["lambda"]
    lake = make_lake(clients["s3"], "tuned-lake")
    assert run(capsys, clients, *deploy_args(lake, local_package, "--function-name", "tuned"))[0] == 0
    lam.update_function_configuration(FunctionName="tuned", Environment={"Variables": {
        "LAKEMAGIC_LAKE": lake, "LAKEMAGIC_INLINE_RESULT_BYTES": "262144", "TZ": "UTC"}})
    lam.get_waiter("function_updated_v2").wait(FunctionName="tuned")

    status, out, err = run(capsys, clients, *deploy_args(lake, local_package, "--function-name", "tuned",
                                                         "--max-result-bytes", "1073741824"))
    assert (status, err) == (0, "")
    assert "updated: configuration; up to date: role, policy, function code, lifecycle rule" in out
    variables = lam.get_function(FunctionName="tuned")["Configuration"]["Environment"]["Variables"]
    assert variables == {"LAKEMAGIC_LAKE": lake, "LAKEMAGIC_INLINE_RESULT_BYTES": "262144", "TZ": "UTC",
                         "LAKEMAGIC_MAX_RESULT_BYTES": "1073741824"}

    # Without the option the cap stays as it is, like everything else: nothing to do.
    status, out, err = run(capsys, clients, *deploy_args(lake, local_package, "--function-name", "tuned"))
    assert (status, err) == (0, "")
    assert "up to date: role, policy, function code, configuration, lifecycle rule" in out
    assert lam.get_function(FunctionName="tuned")["Configuration"]["Environment"]["Variables"] == variables


def test_max_result_bytes_must_be_positive(clients, capsys):
    status, _, err = run(capsys, clients, "deploy", "--lake", "s3://tuned-lake/lake", "--function-name", "no-cap",
                         "--max-result-bytes", "0")
    assert status == 1
    assert one_sentence(err) == "--max-result-bytes must be a positive number of bytes; got 0"


@pytest.fixture(scope="module")
def network(moto_endpoint) -> dict:
    """A VPC on the server with two subnets and a security group, as a user would make them before deploying."""
    ec2 = boto3.Session(region_name=REGION, **FAKE_KEYS).client("ec2", endpoint_url=moto_endpoint)
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.20.{third}.0/24")["Subnet"]["SubnetId"] for third in (1, 2)]
    group = ec2.create_security_group(VpcId=vpc, GroupName="lakemagic-test", Description="no inbound")["GroupId"]
    return {"subnets": subnets, "group": group}


def network_interface_grants(subnets: list[str], group: str) -> dict:
    """The EC2 part of the policy of a function in `subnets` with the security group `group`."""
    ec2 = f"arn:aws:ec2:{REGION}:{ACCOUNT}"
    interfaces = {f"{ec2}:network-interface/*"}
    return {"ec2:CreateNetworkInterface": interfaces | {f"{ec2}:subnet/{subnet}" for subnet in subnets}
            | {f"{ec2}:security-group/{group}"},
            "ec2:DeleteNetworkInterface": interfaces, "ec2:AssignPrivateIpAddresses": interfaces,
            "ec2:UnassignPrivateIpAddresses": interfaces, "ec2:DescribeNetworkInterfaces": {"*"}}


def test_function_in_a_vpc(clients, network, local_package, capsys):
    lam, iam = clients["lambda"], clients["iam"]
    lake = make_lake(clients["s3"], "vpc-lake")
    (first, second), group = network["subnets"], network["group"]

    def deploy_in_vpc(*extra: str) -> str:
        status, out, err = run(capsys, clients, *deploy_args(lake, local_package, "--function-name", "in-vpc", *extra))
        assert (status, err) == (0, "")
        return out

    out = deploy_in_vpc("--subnet-ids", first, "--security-group-ids", group)
    assert "created: role, policy, function code, configuration, lifecycle rule" in out
    assert (f"network: the function is in a VPC (subnets {first}; security groups {group}): give it an S3 gateway "
            f"endpoint (com.amazonaws.{REGION}.s3) for the bucket vpc-lake on those subnets' route tables, and no NAT "
            "route, so the function reaches S3 and nothing else") in out
    config = lam.get_function(FunctionName="in-vpc")["Configuration"]
    assert (config["VpcConfig"]["SubnetIds"], config["VpcConfig"]["SecurityGroupIds"]) == ([first], [group])
    actions = granted(iam, "in-vpc")
    assert {action: actions.pop(action) for action in list(actions) if action.startswith("ec2:")} == (
        network_interface_grants([first], group))
    assert set(actions) == {"s3:GetObject", "s3:ListBucket", "s3:PutObject", "logs:CreateLogGroup",
                            "logs:CreateLogStream", "logs:PutLogEvents"}  # the rest as without a VPC

    # The same IDs again, in any order, or no VPC options at all: nothing changes, and the function stays in its VPC.
    for extra in (["--subnet-ids", first, "--security-group-ids", group], []):
        out = deploy_in_vpc(*extra)
        assert "up to date: role, policy, function code, configuration, lifecycle rule" in out
        assert f"network: the function is in a VPC (subnets {first}; " in out
    assert lam.get_function(FunctionName="in-vpc")["Configuration"]["LastModified"] == config["LastModified"]

    # Another subnet: the configuration follows, and the policy's subnets with it.
    out = deploy_in_vpc("--subnet-ids", f"{second},{first}", "--security-group-ids", group)
    assert "updated: policy, configuration; up to date: role, function code, lifecycle rule" in out
    vpc = lam.get_function(FunctionName="in-vpc")["Configuration"]["VpcConfig"]
    assert (sorted(vpc["SubnetIds"]), vpc["SecurityGroupIds"]) == (sorted([first, second]), [group])
    assert network_interface_grants([first, second], group).items() <= granted(iam, "in-vpc").items()
    out = deploy_in_vpc("--subnet-ids", f"{first},{second}", "--security-group-ids", group)
    assert "up to date: role, policy, function code, configuration, lifecycle rule" in out

    # --no-vpc: out of the VPC, and the EC2 actions leave the policy.
    out = deploy_in_vpc("--no-vpc")
    assert "updated: policy, configuration; up to date: role, function code, lifecycle rule" in out
    assert "network: the function has Lambda's default internet egress" in out
    vpc = lam.get_function(FunctionName="in-vpc")["Configuration"].get("VpcConfig") or {}
    assert (vpc.get("SubnetIds", []), vpc.get("SecurityGroupIds", [])) == ([], [])
    assert not [action for action in granted(iam, "in-vpc") if action.startswith("ec2:")]
    assert "up to date: role, policy, function code, configuration, lifecycle rule" in deploy_in_vpc("--no-vpc")
    assert run(capsys, clients, "destroy", "--function-name", "in-vpc")[0] == 0


BOTH = "--subnet-ids and --security-group-ids go together: a function in a VPC needs both"


@pytest.mark.parametrize("extra, sentence", [
    (["--subnet-ids", "subnet-0a1b"], BOTH),
    (["--security-group-ids", "sg-0a1b"], BOTH),
    (["--subnet-ids", "subnet-0A1B", "--security-group-ids", "sg-0a1b"],
     "--subnet-ids must be IDs like subnet-0123abcd, separated by commas; 'subnet-0A1B' is not one"),
    (["--subnet-ids", "subnet-0a1b,", "--security-group-ids", "sg-0a1b"],
     "--subnet-ids must be IDs like subnet-0123abcd, separated by commas; '' is not one"),
    (["--subnet-ids", "subnet-0a1b", "--security-group-ids", "sg-0a1b,vpc-0a1b"],
     "--security-group-ids must be IDs like sg-0123abcd, separated by commas; 'vpc-0a1b' is not one"),
    (["--no-vpc", "--subnet-ids", "subnet-0a1b", "--security-group-ids", "sg-0a1b"],
     "--no-vpc takes the function out of its VPC, so it goes with neither --subnet-ids nor --security-group-ids"),
])
def test_bad_vpc_options(clients, capsys, extra, sentence):
    status, _, err = run(capsys, clients, "deploy", "--lake", "s3://vpc-lake/lake", "--function-name", "bad-vpc", *extra)
    assert status == 1
    assert one_sentence(err) == sentence
    assert role_name("bad-vpc") not in [role["RoleName"] for role in clients["iam"].list_roles()["Roles"]]


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
    """A deploying user without iam:CreateRole: moto enforces IAM, and the error says what is missing.

    The denial comes before deploy's first Lambda call (get_function, to learn
    the function's VPC): with keys checked, moto's server answers
    SignatureDoesNotMatch to every GetFunction.
    """
    make_lake(clients["s3"], "denied-lake")
    iam = clients["iam"]
    iam.create_user(UserName="deployer")
    allowed = ["sts:GetCallerIdentity", "s3:ListBucket", "s3:HeadBucket",  # moto checks HeadBucket by that name
               "iam:GetRole"]
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
        f"access denied: arn:aws:iam::{ACCOUNT}:user/deployer may not iam:CreateRole on "
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
    with pytest.raises(DeployError, match=r"Lambda still cannot use the role .*not-there-yet after 2 s \(.*cannot be "
                                          r"assumed by Lambda\); run deploy again"):
        _create_function(client, "arn", "never", {"Role": missing_role, "Handler": HANDLER, "Runtime": Target.local().runtime},
                         Target.local(), code, LakeLocation("deploy-lake", ""), 2.0, said.append)
    assert said == ["waiting for the role and its policy to reach Lambda (IAM takes a few seconds to propagate)..."]


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
