"""lakemagic: query a Parquet data lake from Jupyter with `%%lakesql`.

`%load_ext lakemagic` registers the magics and their tab completion. The
SQL runs in the lake handler (`lakelambda`): in this process by default,
or in AWS Lambda.
"""

__version__ = "0.1.0"


def load_ipython_extension(shell) -> None:
    from .completion import register
    from .magic import LakeMagic

    magic = LakeMagic(shell=shell)
    shell.register_magics(magic)
    register(shell, magic)
