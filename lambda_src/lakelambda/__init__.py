"""The lake handler: DuckDB over a Parquet lake, answering the lakemagic protocol.

This package is what ships to AWS Lambda. It imports nothing from the
notebook side; the notebook side imports its protocol.
"""

# The function `lakemagic deploy` creates, and the Lambda engine's default: the one name both sides share.
DEFAULT_FUNCTION_NAME = "lakemagic"
