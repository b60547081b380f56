"""The notebook's reuse scope: the secret that decides whose stored results may answer its queries.

The handler keys a result's reuse key with the scope a query carries
(HMAC), so a result is reused only by callers who send the same scope, and
nothing about another scope's results (whether they exist, when they ran) can
be told from an answer or its timing. By default each user has one of their
own: a random key in `~/.lakemagic/reuse-scope`, readable only by them, made
on first use. A team that wants to share results sets one shared secret,
`%config LakeMagic.reuse_scope = '...'` or `LAKEMAGIC_REUSE_SCOPE`: everyone who
holds it may be answered from, and so learn about, the others' queries.
"""

from __future__ import annotations

import os
import secrets
import tempfile

from lakelambda.protocol import MAX_REUSE_SCOPE_CHARS, MIN_REUSE_SCOPE_CHARS, reuse_scope_problem

from .errors import LakeMagicError

ENVIRONMENT = "LAKEMAGIC_REUSE_SCOPE"
SCOPE_FILE = os.path.join("~", ".lakemagic", "reuse-scope")


class ReuseScopeError(LakeMagicError):
    """A reuse scope that cannot be used: too short to be a secret, or a scope file that is not one."""


def reuse_scope(configured: str = "") -> str:
    """The scope to send: `configured` (%config LakeMagic.reuse_scope) if set, else $LAKEMAGIC_REUSE_SCOPE,
    else the user's own from ~/.lakemagic/reuse-scope, made on first use."""
    if configured:
        return _checked(configured, "LakeMagic.reuse_scope")
    if os.environ.get(ENVIRONMENT):
        return _checked(os.environ[ENVIRONMENT], ENVIRONMENT)
    return user_scope(os.path.expanduser(SCOPE_FILE))


def user_scope(path: str) -> str:
    """The scope kept in `path`, made there first if there is none: a random key only its owner may read,
    written whole or not at all (two kernels starting at once agree on the one that landed first)."""
    try:
        with open(path, encoding="ascii") as kept:
            if os.fstat(kept.fileno()).st_mode & 0o077:
                raise ReuseScopeError(f"{path} may be read by other users, who could then be answered from "
                                      f"your results; make it yours alone: chmod 600 {path}")
            scope = kept.read().strip()
    except FileNotFoundError:
        pass
    except UnicodeDecodeError:
        raise ReuseScopeError(f"{path} does not hold a reuse scope (it is not text); remove it to make a new one") from None
    else:
        problem = reuse_scope_problem(scope)
        if problem is not None:
            raise ReuseScopeError(f"{path} does not hold a reuse scope ({problem}); remove it to make a new one")
        return scope
    folder = os.path.dirname(path)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    descriptor, draft = tempfile.mkstemp(prefix=".reuse-scope-", dir=folder)  # created 0600
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as written:
            written.write(secrets.token_hex(32) + "\n")
        os.link(draft, path)  # fails if another kernel made one meanwhile: then that one is read
    except FileExistsError:
        pass
    finally:
        os.remove(draft)
    return user_scope(path)


def _checked(scope: str, where: str) -> str:
    problem = reuse_scope_problem(scope)
    if problem is not None:
        raise ReuseScopeError(f"{where}: {problem} (a shared scope is a secret of {MIN_REUSE_SCOPE_CHARS} to "
                              f"{MAX_REUSE_SCOPE_CHARS} characters, for example python -c "
                              "'import secrets; print(secrets.token_hex(32))')")
    return scope
