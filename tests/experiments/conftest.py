import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture(scope="session")
def quick_sweep(tmp_path_factory):
    """The README's worked example, run as it says in a fresh folder: (folder, commands, their outcomes).

    The commands go through the CLI's entry point in this process; the sweep's workers are real processes.
    """
    from sweep_helpers import REPO, readme_example, run_main

    folder = tmp_path_factory.mktemp("readme")
    (folder / "examples" / "sweeps").mkdir(parents=True)
    shutil.copy(REPO / "examples" / "sweeps" / "quick.yaml", folder / "examples" / "sweeps" / "quick.yaml")
    _, commands = readme_example()
    outputs = [run_main(*command, cwd=folder) for command in commands]
    for command, outcome in zip(commands, outputs):
        assert outcome.returncode == 0, f"sparsetime {' '.join(command)}: {outcome.stderr}"
    return folder, commands, outputs
