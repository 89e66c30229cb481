import subprocess
import sys

LIGHT_MODULES = [
    "tokbench.data",
    "tokbench.data.base",
    "tokbench.data.params",
    "tokbench.data.shapes",
    "tokbench.data.transforms",
    "tokbench.data.imagefolder",
]


def test_datasets_import_without_torch():
    code = (
        "import sys\n"
        + "".join(f"import {name}\n" for name in LIGHT_MODULES)
        + "heavy = [m for m in ('torch', 'torchvision') if m in sys.modules]\n"
        + "print(','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"importing the datasets pulled in {result.stdout.strip()}"
