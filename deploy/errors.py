"""The one exception `lakemagic deploy` and `destroy` show a user: a sentence, never a traceback."""


class DeployError(Exception):
    """Something the user can act on, said in one sentence."""
