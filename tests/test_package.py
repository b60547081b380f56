"""The deployment package: it answers a query from a read-only folder with nothing else installed, and fits Lambda.

The local package is built for this machine's Python from the installed
duckdb and its extensions' wheels (httpfs, iceberg, delta, avro; copied file
by file from site-packages by `InstalledPackages`), so it runs here; the real one, for the default target
(python3.12 on x86_64, and arm64), comes from PyPI through `pip download`.
"""

from __future__ import annotations

import base64
import importlib.metadata
import importlib.util
import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import boto3
import duckdb
import pytest

from lakedeploy.errors import DeployError
from lakedeploy.package import (
    DIRECT_UPLOAD_LIMIT, EXTENSIONS, MB, TABLE_FORMAT_EXTENSIONS, UNZIPPED_LIMIT, build_package, default_cache_dir,
    duckdb_version,
)
from lakedeploy.wheels import InstalledPackages, PipDownload, Target
from lakemagic.taxi import load_lake
from servers import FAKE_KEYS

# What Lambda's Python runtime provides beside the function's code: boto3 and what it imports.
RUNTIME_DISTRIBUTIONS = ("boto3", "botocore", "jmespath", "s3transfer", "python-dateutil", "six", "urllib3")
REGION = "us-east-1"
CREDENTIALS = {**{name.upper(): value for name, value in FAKE_KEYS.items()}, "AWS_DEFAULT_REGION": REGION}
BUCKET = "package-lake"
# The table readers the iceberg, delta and avro extensions add: present in a database only once they are loaded.
READERS = ("SELECT DISTINCT function_name FROM duckdb_functions() "
           "WHERE function_name IN ('iceberg_scan', 'delta_scan', 'read_avro')")
# A text column makes the handler measure the inline result before it travels (page_format.written_size).
QUERY = {"version": 1, "op": "query", "sql": "SELECT count(*) AS n, max(trip_id)::VARCHAR AS last FROM trips",
         "params": {}, "page_size": 10}


@pytest.fixture(scope="module")
def s3_with_tiny_lake(moto_endpoint, tmp_path_factory):
    """The S3 API server holding s3://package-lake/dataset/trips.parquet, seven rows.

    The server's state is shared by every test of the session, so the bucket
    has a name no other test uses.
    """
    trips = tmp_path_factory.mktemp("tiny-lake") / "trips.parquet"
    duckdb.sql(f"COPY (SELECT range AS trip_id FROM range(7)) TO '{trips}' (FORMAT parquet)")
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name=REGION, **FAKE_KEYS)
    s3.create_bucket(Bucket=BUCKET)
    s3.upload_file(str(trips), BUCKET, "dataset/trips.parquet")
    return moto_endpoint, s3


def _snapshot(folder: Path) -> dict:
    return {str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns, stat.S_IMODE(path.stat().st_mode))
            for path in sorted(folder.rglob("*"))}


def _lambda_runtime_folder(into: Path) -> Path:
    """A folder holding only boto3 and its dependencies, as Lambda's runtime puts them on sys.path.

    The runtime's own site-packages is not part of the deployment package, so
    the package must not bundle boto3; this stands in for it. Entries are
    links to this environment's installed copies.
    """
    into.mkdir()
    for project in RUNTIME_DISTRIBUTIONS:
        distribution = importlib.metadata.distribution(project)
        for top in {Path(str(file)).parts[0] for file in distribution.files or () if not str(file).startswith("..")}:
            source = Path(distribution.locate_file(top))
            if source.exists() and not (into / top).exists() and not top.endswith(".dist-info"):
                (into / top).symlink_to(source)
    return into


def test_local_package_answers_a_query_from_a_read_only_folder(local_package, s3_with_tiny_lake, tmp_path):
    endpoint, s3 = s3_with_tiny_lake
    task = tmp_path / "task"  # Lambda's /var/task: the package unzipped, read-only
    with zipfile.ZipFile(local_package) as package:
        package.extractall(task)
    runtime = _lambda_runtime_folder(tmp_path / "runtime")
    scratch, elsewhere = tmp_path / "tmp", tmp_path / "cwd"
    scratch.mkdir()
    elsewhere.mkdir()
    subprocess.run(["chmod", "-R", "a-w", str(task)], check=True)
    # Root ignores permission bits, so read-only-ness is also checked by comparing the folder before and after.
    before = _snapshot(task)

    code = "\n".join([
        "import importlib.util, json, sys",
        f"sys.path[:0] = [{str(task)!r}, {str(runtime)!r}]",
        # Every module compiled from source as it is imported: none of the package's, which ships its bytecode.
        "import importlib._bootstrap_external as external",
        "compiled, source_to_code = [], external.SourceLoader.source_to_code",
        "external.SourceLoader.source_to_code = lambda self, data, path, **options: (",
        "    compiled.append(str(path)), source_to_code(self, data, path, **options))[1]",
        "import lakelambda.handler, lakelambda.page_format",
        "loading = lakelambda.handler._loading is not None",  # the database started loading as Lambda imported it
        f"answer = lakelambda.handler.handler(json.loads({json.dumps(QUERY)!r}), None)",
        "loading = [loading, lakelambda.handler._loading is None, lakelambda.page_format._measurer.cache_info().currsize]",
        "files = {name: getattr(module, '__file__', None) or '' for name, module in sorted(sys.modules.items())}",
        "scratch = lakelambda.handler._lambda_handler.settings.scratch",
        "boto3 = importlib.util.find_spec('boto3').origin",
        # Which extensions the Parquet query left loaded in the handler's database; then where the handler's
        # lookup finds the table formats' extensions, and whether this DuckDB loads each file found there.
        # (duckdb_extensions() lists the extension folder, which the sandbox closes: their functions tell.)
        "functions = lakelambda.handler._lambda_handler._database.execute(",
        f"    {READERS!r}).fetchall()",
        "import duckdb, lakelambda.database",
        f"found = {{name: lakelambda.database.extension_path(name) for name in {TABLE_FORMAT_EXTENSIONS!r}}}",
        "fresh = duckdb.connect(config={'autoinstall_known_extensions': False, 'autoload_known_extensions': False})",
        "for path in found.values():",
        "    fresh.execute(f\"LOAD '{path}'\")",
        f"loaded = sorted(name for name, in fresh.execute({READERS!r}).fetchall())",
        "print(json.dumps({'answer': answer, 'files': files, 'path': sys.path, 'scratch': scratch, 'boto3': boto3,",
        "                  'functions': functions, 'found': found, 'loaded': loaded, 'loading': loading,",
        "                  'compiled': compiled}))",
    ])
    environment = {
        "PATH": "/usr/bin:/bin", "TMPDIR": str(scratch), "LAKEMAGIC_LAKE": f"s3://{BUCKET}",
        "AWS_ENDPOINT_URL_S3": endpoint, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "2048", **CREDENTIALS,
        "_HANDLER": "lakelambda.handler.handler",  # as Lambda names the function's handler
    }  # no HOME, no PYTHONPATH; -I -S: no user or site packages either
    # -B: on Lambda's read-only /var/task Python's bytecode cache fails silently; as root here it would succeed,
    # so it is switched off rather than mistaken for the handler writing into its package.
    done = subprocess.run([sys.executable, "-I", "-S", "-B", "-c", code], cwd=elsewhere, env=environment,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])

    answer = report["answer"]
    assert "error" not in answer, answer
    assert answer["columns"] == [{"name": "n", "type": "BIGINT"}, {"name": "last", "type": "VARCHAR"}]
    assert answer["total_rows"] == 1
    page = tmp_path / "page.parquet"
    page.write_bytes(base64.b64decode(answer["page"]["data"]))
    assert duckdb.sql(f"SELECT n, last FROM '{page}'").fetchall() == [(7, "6")]
    # The database started loading httpfs at the import, and the first invocation took it over; the inline
    # result was measured in the handler's own database, which wrote it: no third database (the measurer's).
    assert report["loading"] == [True, True, 0]
    assert answer["stats"]["duckdb_version"] == duckdb_version()

    # Everything came from the package, the rest from the standard library; boto3 would come from the runtime
    # folder, but a query over a dataset answered inline does not import it (200 ms of a cold start).
    files = report["files"]
    assert files["_duckdb"].startswith(str(task)) and files["lakelambda"].startswith(str(task))
    # DuckDB's engine, without its package's own Python (lakelambda/__init__.py: about 30 ms of a cold start).
    assert "duckdb" not in files
    assert files["duckdb_extension_httpfs"].startswith(str(task))
    assert "boto3" not in files and "botocore" not in files and report["boto3"].startswith(str(runtime))
    assert not [name for name, file in files.items() if "site-packages" in file]
    assert not [path for path in report["compiled"] if path.startswith(str(task))]
    # Nor the fan-out's and the estimate's modules, which a plain query does not use.
    assert not {"lakelambda.tasks", "lakelambda.estimate"} & set(files)
    # A Parquet query's cold start loads none of the table formats' extensions, which the handler finds in
    # the package all the same, and which load in the packaged DuckDB without reaching for the network.
    assert report["functions"] == []
    assert all(path.startswith(str(task)) for path in report["found"].values()), report["found"]
    assert report["loaded"] == ["delta_scan", "iceberg_scan", "read_avro"]
    # The small result went nowhere, the scratch files to TMPDIR (gone with the process), nothing into the package.
    listing = s3.list_objects_v2(Bucket=BUCKET, Prefix="_lakemagic/results/")
    assert answer["result_id"] is None and "Contents" not in listing  # a one-row result travels inline
    assert Path(report["scratch"]).parent == scratch and Path(report["scratch"]).name.startswith("lakemagic-")
    assert list(scratch.iterdir()) == []
    assert _snapshot(task) == before
    assert all(not mode & 0o222 for _, _, mode in before.values())
    subprocess.run(["chmod", "-R", "u+w", str(task)], check=True)


def test_the_database_starts_loading_before_the_handler_imports_the_protocol():
    """loading.py, which the handler imports first, starts the load (about 70 ms of CPU) as soon as it is
    imported, so it needs nothing of the package's heavier modules (the protocol's: about 25 ms of imports)."""
    code = "import sys, lakelambda.loading; print(' '.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60, check=True)
    imported = set(done.stdout.split())
    assert "lakelambda.loading" in imported and "_duckdb" in imported
    assert not {"lakelambda.protocol", "lakelambda.answers", "lakelambda.handler", "lakelambda.run"} & imported


def test_package_holds_the_handler_and_wheels_and_nothing_lambda_has(local_package):
    with zipfile.ZipFile(local_package) as package:
        entries = package.infolist()
    names = [entry.filename for entry in entries]
    assert names == sorted(names)
    assert {entry.date_time for entry in entries} == {(1980, 1, 1, 0, 0, 0)}
    assert "lakelambda/handler.py" in names and "duckdb/__init__.py" in names
    for name in EXTENSIONS:
        assert f"duckdb_extension_{name}/extensions/v{duckdb_version()}/{name}.duckdb_extension" in names
    assert not [name for name in names if name.split("/")[0] in ("boto3", "botocore", "s3transfer")]
    assert not [name for name in names if name.endswith(".pyi")]


def test_package_ships_each_module_compiled_for_its_source(local_package):
    """Lambda's /var/task is read-only: without the bytecode in the zip, every cold start compiles the modules."""
    with zipfile.ZipFile(local_package) as package:
        files = {name: package.read(name) for name in package.namelist() if name.endswith((".py", ".pyc"))}
    sources = [name for name in files if name.endswith(".py") and name.split("/")[0] in ("lakelambda", "duckdb")]
    assert "lakelambda/handler.py" in sources and "duckdb/__init__.py" in sources
    for source in sources:
        cached = importlib.util.cache_from_source(source)
        assert cached in files, f"{source} has no bytecode in the package"
        flags = int.from_bytes(files[cached][4:8], "little")
        assert files[cached][:4] == importlib.util.MAGIC_NUMBER and flags == 0b11, cached  # checked by hash
        assert files[cached][8:16] == importlib.util.source_hash(files[source]), f"{cached} is not {source}'s"


def test_same_inputs_give_the_same_bytes(local_package, tmp_path):
    again = build_package(Target.local(), InstalledPackages(), cache_dir=tmp_path / "another-cache")
    assert Path(again.path).read_bytes() == Path(local_package).read_bytes()
    assert again.sha256 == build_package(Target.local(), InstalledPackages(), cache_dir=tmp_path / "another-cache").sha256


def _build_or_skip(target: Target, **options):
    try:
        return build_package(target, **options)
    except DeployError as exc:
        if "could not reach the package index" in str(exc):
            pytest.skip(f"PyPI is unreachable from here: {exc}")
        raise


@pytest.mark.parametrize("architecture", ["x86_64", "arm64"])
def test_real_package_for_lambda_fits_its_limits(architecture):
    """The default runtime's package, from PyPI's manylinux wheels (cached in ~/.cache/lakemagic between runs)."""
    target = Target("python3.12", architecture)
    info = _build_or_skip(target)
    assert (info.python_version, info.machine, info.duckdb_version) == ("3.12", target.machine, duckdb_version())
    assert list(info.extensions) == list(EXTENSIONS), "PyPI has every extension's wheel for both architectures"
    if sys.implementation.cache_tag == "cpython-312":
        assert info.notes == []
    else:  # the bytecode of Python 3.12 can only come from Python 3.12
        assert len(info.notes) == 1 and "the package ships no bytecode" in info.notes[0], info.notes
    assert info.unzipped_bytes < UNZIPPED_LIMIT
    assert info.zipped_bytes < DIRECT_UPLOAD_LIMIT or info.upload_method() == "s3"
    report = info.size_report()
    assert f"{info.zipped_bytes / MB:.1f} MB zipped" in report and f"{info.unzipped_bytes / MB:.1f} MB unzipped" in report
    assert "50 MB" in report and "250 MB" in report
    formats = [info.extensions[name] for name in TABLE_FORMAT_EXTENSIONS]
    assert (f"the avro, iceberg, delta extensions are {sum(zipped for zipped, _ in formats) / MB:.1f} MB zipped and "
            f"{sum(unzipped for _, unzipped in formats) / MB:.1f} MB unzipped") in report
    with zipfile.ZipFile(info.path) as package:
        names = package.namelist()
    assert f"_duckdb.cpython-312-{target.machine}-linux-gnu.so" in names
    assert not [name for name in names if name.startswith(("boto3/", "botocore/"))]
    print(f"\n{target.runtime} {architecture}: {report}")


def test_missing_extension_wheels_are_left_out_and_said(tmp_path, monkeypatch):
    """pip finds only DuckDB's wheel: the package goes without its extensions, and says what each absence means."""
    target = Target("python3.12", "x86_64")
    wheels = default_cache_dir() / "wheels" / "cp312-x86_64"
    try:
        duckdb_wheel = PipDownload(target, wheels).wheel("duckdb", duckdb_version())
    except DeployError as exc:
        if "could not reach the package index" in str(exc):
            pytest.skip(f"PyPI is unreachable from here: {exc}")
        raise
    only_duckdb = tmp_path / "index"
    only_duckdb.mkdir()
    shutil.copy(duckdb_wheel, only_duckdb)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # this machine's pip settings must not add another index
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    source = PipDownload(target, only_duckdb, ("--no-index", "--find-links", str(only_duckdb)))
    info = build_package(target, source, cache_dir=tmp_path / "cache")
    assert not info.has_httpfs
    with zipfile.ZipFile(info.path) as package:
        assert not [name for name in package.namelist() if name.startswith("duckdb_extension_")]
    assert info.extensions == {}
    notes = [note for note in info.notes if "ships no bytecode" not in note]  # that one depends on this Python
    assert len(notes) == len(EXTENSIONS)
    missing = "wheel for CPython 3.12 on manylinux x86_64: "
    assert notes[0].startswith(f"the package index has no duckdb-extension-httpfs=={duckdb_version()} {missing}"
                                    "the function installs httpfs from DuckDB's extension repository into /tmp at "
                                    "each cold start")
    assert notes[1:] == [
        f"the package index has no duckdb-extension-{name}=={duckdb_version()} {missing}the function cannot read the "
        f"lake's {tables}" for name, tables in (("avro", "Iceberg tables (their manifests are Avro)"),
                                                ("iceberg", "Iceberg tables"), ("delta", "Delta tables"))]
    assert "extensions are" not in info.size_report()


def test_packaged_handler_loads_a_table_formats_extensions_at_its_first_query_of_one(local_package, moto_endpoint,
                                                                                      tmp_path):
    """From the package's own files: a Parquet query loads no table format's extension; the first query over the
    demo lake's Iceberg table loads Iceberg's (avro, iceberg) from the package, and not Delta's."""
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name=REGION, **FAKE_KEYS)
    s3.create_bucket(Bucket="package-iceberg-lake")
    load_lake("s3://package-iceberg-lake", rows=2_000, seed=3, s3=s3)
    task = tmp_path / "task"
    with zipfile.ZipFile(local_package) as package:
        package.extractall(task)
    runtime = _lambda_runtime_folder(tmp_path / "runtime")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    queries = [dict(QUERY, sql=f"SELECT count(*) AS n FROM {table}") for table in ("taxi_2019_04", "taxi_iceberg")]
    code = "\n".join([
        "import json, sys",
        f"sys.path[:0] = [{str(task)!r}, {str(runtime)!r}]",
        "import lakelambda.handler",
        "steps = []",
        f"for query in json.loads({json.dumps(queries)!r}):",
        "    answer = lakelambda.handler.handler(query, None)",
        f"    readers = lakelambda.handler._lambda_handler._database.execute({READERS!r}).fetchall()",
        "    steps.append({'answer': answer, 'readers': sorted(name for name, in readers)})",
        "files = {name: getattr(module, '__file__', None) or '' for name, module in sys.modules.items()}",
        "print(json.dumps({'steps': steps, 'files': files}))",
    ])
    environment = {
        "PATH": "/usr/bin:/bin", "TMPDIR": str(scratch), "LAKEMAGIC_LAKE": "s3://package-iceberg-lake",
        "AWS_ENDPOINT_URL_S3": moto_endpoint, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "2048", **CREDENTIALS,
    }
    done = subprocess.run([sys.executable, "-I", "-S", "-B", "-c", code], cwd=tmp_path, env=environment,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    parquet, iceberg = report["steps"]
    for step in (parquet, iceberg):
        assert "error" not in step["answer"], step["answer"]
        page = tmp_path / "page.parquet"
        page.write_bytes(base64.b64decode(step["answer"]["page"]["data"]))
        assert duckdb.sql(f"SELECT n FROM '{page}'").fetchall() == [(2_000,)]
    assert parquet["readers"] == []
    assert iceberg["readers"] == ["iceberg_scan", "read_avro"]
    assert report["files"]["duckdb_extension_iceberg"].startswith(str(task))
    assert list(scratch.iterdir()) == []
