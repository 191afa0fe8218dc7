"""Optional dependencies: importing sparsetime imports none of them; a missing one names its extra."""
from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys
import sparsetime, sparsetime.cli, sparsetime.integrations
import sparsetime.integrations.torch_prune, sparsetime.integrations.export_run, sparsetime.integrations.run_table
heavy = [m for m in ("transformers", "lightning", "safetensors", "torch.utils.tensorboard") if m in sys.modules]
print("loaded:", heavy)
for module, blocked in (("huggingface", "transformers"), ("lightning", "lightning")):
    sys.modules[blocked] = None  # as if it were not installed
    try:
        __import__("sparsetime.integrations." + module)
    except ImportError as exc:
        print(module + ":", exc)
"""


def test_optional_imports_are_lazy_and_name_their_extra():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "loaded: []"
    assert lines[1] == ("huggingface: sparsetime.integrations.huggingface needs the 'transformers' package, which is "
                        "not installed: pip install 'sparsetime[hf]'")
    assert lines[2] == ("lightning: sparsetime.integrations.lightning needs the 'lightning' package, which is not "
                        "installed: pip install 'sparsetime[lightning]'")
