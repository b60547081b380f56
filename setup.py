"""setuptools reads setup.cfg; this only stops a wheel or sdist being made without the built front-end extension.

The extension is built with Node (`make wheel` does it first) and is not committed, so a package made
from a bare checkout would install without SQL colouring and say nothing.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.sdist import sdist

BUILT = Path(__file__).resolve().parent / "lakemagic" / "highlight" / "labextension" / "package.json"


def needing_the_extension(command: type) -> type:
    class Checked(command):
        def run(self) -> None:
            if not BUILT.exists():
                raise SystemExit(
                    "lakemagic/highlight/labextension/ is not built: the package would install without its SQL "
                    "colouring. Run `make wheel`, which builds it with Node 20 and npm and then the wheel.")
            super().run()
    return Checked


setup(cmdclass={"bdist_wheel": needing_the_extension(bdist_wheel), "sdist": needing_the_extension(sdist)})
