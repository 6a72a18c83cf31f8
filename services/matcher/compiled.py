"""Which build of the engine runs: the Cython-compiled one `make` builds, or the pure one.

The engine's three modules (engine.py, book.py, state.py) are the reference; Cython
compiles them unchanged, typed by the .pxd files beside them, into extension modules
in the same directory, which Python's import prefers to the .py files. Those are used
only when they were built from exactly the sources present (a digest recorded at build
time), so an edit without a rebuild runs the pure code instead of stale machine code;
``EXCHANGE_PURE_ENGINE=1`` asks for the pure build outright. Both builds give the same
events and state hashes (tests/test_engine_builds.py).

``build()`` compiles them (`make` calls it; it needs Cython and a C compiler).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODULES = ("state", "book", "engine")  # in dependency order
DIGEST_FILE = HERE / "compiled.sha256"  # written by a build; not in git
PURE_ENV = "EXCHANGE_PURE_ENGINE"


def sources_digest() -> str:
    """A digest of everything a build is made from: the modules and their .pxd files."""
    digest = hashlib.sha256()
    for name in MODULES:
        for suffix in (".py", ".pxd"):
            digest.update((HERE / (name + suffix)).read_bytes())
    return digest.hexdigest()


def _built() -> bool:
    """Whether every module has an extension built from the sources present."""
    if not all(any((HERE / (n + s)).exists() for s in EXTENSION_SUFFIXES) for n in MODULES):
        return False
    try:
        return DIGEST_FILE.read_text().strip() == sources_digest()
    except OSError:
        return False


class _PureFinder:
    """Loads the engine's modules from their .py files, past any built extension."""

    names = {f"{__package__}.{name}": HERE / f"{name}.py" for name in MODULES}

    def find_spec(self, fullname, path=None, target=None):
        source = self.names.get(fullname)
        return None if source is None else importlib.util.spec_from_file_location(fullname, source)


def choose() -> None:
    """Called once, when the package is imported, before any engine module is."""
    if os.environ.get(PURE_ENV) == "1" or not _built():
        sys.meta_path.insert(0, _PureFinder())


def running_compiled() -> bool:
    """Whether the engine this process imported is the compiled build."""
    from services.matcher import engine

    return not engine.__file__.endswith(".py")


def build() -> None:
    """Compile the engine's modules in place (as `make` does), then record their digest."""
    from Cython.Build import cythonize  # build-time only: `make install` installs it
    from setuptools import Extension, setup

    root = HERE.parents[1]
    os.chdir(root)
    DIGEST_FILE.unlink(missing_ok=True)
    digest = sources_digest()
    extensions = [
        # gcc cannot see that the typed locals a reject path leaves unset are never read
        Extension(
            f"services.matcher.{name}",
            [f"services/matcher/{name}.py"],
            extra_compile_args=["-Wno-maybe-uninitialized"],
        )
        for name in MODULES
    ]
    setup(
        name="zmq-exchange-engine",
        ext_modules=cythonize(
            extensions,
            language_level=3,
            quiet=True,
            # the .pxd files give the types; the .py annotations stay documentation
            # a C integer that would pass int64 raises instead of wrapping
            compiler_directives={"annotation_typing": False, "overflowcheck": True},
        ),
        script_args=["build_ext", "--inplace", "--build-temp", "build/engine"],
    )
    for name in MODULES:  # the generated C is an intermediate
        (HERE / f"{name}.c").unlink(missing_ok=True)
    DIGEST_FILE.write_text(digest + "\n")
