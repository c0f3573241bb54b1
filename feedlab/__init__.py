"""feedlab: A/B experimentation platform for feed recommenders.

The repository keeps `gateway/`, `experiments/`, `models/`, `analysis/` and `storage/` beside
this folder; the build installs them as `feedlab.gateway`, `feedlab.models`, ... (pyproject's
package-dir). When Python finds this folder itself (a source checkout on `sys.path`, e.g. the
current directory), the subpackages are looked up beside it too, so imports read the same.
"""

from pathlib import Path

__version__ = "0.1.0"

_CHECKOUT = Path(__file__).resolve().parent.parent
if (_CHECKOUT / "pyproject.toml").is_file() and (_CHECKOUT / "gateway").is_dir():
    __path__.append(str(_CHECKOUT))
