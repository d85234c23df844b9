import sys
from pathlib import Path

# Tests import the helpers module beside this file and the package from core/ even when the
# package is not installed (the README's test command installs it; this keeps IDE runs easy).
HERE = Path(__file__).resolve().parent
for path in (HERE, HERE.parent / "core"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
