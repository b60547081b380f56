"""The lake handler: DuckDB over a Parquet lake, answering the lakemagic protocol.

This package is what ships to AWS Lambda. It imports nothing from the
notebook side; the notebook side imports its protocol.

It imports DuckDB's engine as `_duckdb`, the compiled module that the
`duckdb` package re-exports (connections, errors, the tokenizer): the
package's own Python adds nothing the handler uses, and importing it costs
a cold start about 30 ms of CPU (its version, looked up through
importlib.metadata, and its DB-API type objects).
"""

# The function `lakemagic deploy` creates, and the Lambda engine's default: the one name both sides share.
DEFAULT_FUNCTION_NAME = "lakemagic"
