"""lakemagic: query a Parquet data lake from Jupyter with `%%lakesql`.

`%load_ext lakemagic` registers the magics. The SQL runs in the lake
handler (`lakelambda`): in this process by default, or in AWS Lambda.
"""

__version__ = "0.1.0"


def load_ipython_extension(shell) -> None:
    from .magic import LakeMagic

    shell.register_magics(LakeMagic(shell=shell))
