"""The baseline handler for the cold-start benchmark: DuckDB to a pandas DataFrame to JSON records,
as a Lambda SQL endpoint is commonly written. DuckDB is sized as the lake handler sizes it for the
function's memory (its threads and memory limit), so the two compare like for like."""

import json
import os

import duckdb
import pandas as pd

from lakelambda.database import duckdb_memory_mb, duckdb_threads, extension_path

_con = duckdb.connect()
if os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"):
    _memory_mb = int(os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"])
    _con.execute(f"SET memory_limit = '{duckdb_memory_mb(_memory_mb)}MB'")
    _con.execute(f"SET threads = {duckdb_threads(_memory_mb)}")
_con.execute(f"LOAD '{extension_path('httpfs')}'")
_host = os.environ["AWS_ENDPOINT_URL_S3"].split("://", 1)[1]
_con.execute(f"CREATE SECRET (TYPE s3, KEY_ID '{os.environ['AWS_ACCESS_KEY_ID']}', SECRET '{os.environ['AWS_SECRET_ACCESS_KEY']}', "
             f"REGION 'us-east-1', ENDPOINT '{_host}', URL_STYLE 'path', USE_SSL false)")


def handler(event, context):
    sql = event["sql"].replace("FROM taxi_2019_04", f"FROM '{os.environ['LAKEMAGIC_LAKE']}/dataset/taxi_2019_04.parquet'")
    frame: pd.DataFrame = _con.sql(sql).df()
    return {"rows": json.loads(frame.to_json(orient="records", date_format="iso"))}
