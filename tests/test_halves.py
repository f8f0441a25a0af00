"""A half is a set of files (parts.yml): the list Copier leaves a half out by is every file of
it. That a project of one half then starts and passes its own suite is
tests/test_variants_run.py's.
"""

from __future__ import annotations

from native.settings import deployed
from tests.parts import half_files, project_files
from tests.support import ROOT


def test_the_files_listed_are_every_file_of_each_half():
    """copier.yml's list is the half: every file named after the half's package or program
    elsewhere in the tree is on it, and every entry exists."""
    for half in deployed():
        for name in half_files(half.prefix):
            assert (ROOT / name).exists(), name
        listed = tuple(half_files(half.prefix))
        strays = [
            name
            for name in project_files()
            if (f"/{half.program}." in f"/{name}" or f"{half.package}/" in name or f"/{half.prefix}.conf" in name)
            and not name.startswith(listed)
        ]
        assert not strays, strays
