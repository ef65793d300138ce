"""The deploy folder of a run (``RUN/deploy/``): the selected artifact's files, its model card, ``predict.py`` and,
beside it, the runtime's session module (``edgekd_session.py``: the one place edgekd sets up that runtime).

The folder is built beside its final place and swapped in whole (:func:`edgekd._atomic.atomic_dir`), so it never
mixes the files of two selections.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Any

from edgekd._atomic import atomic_dir, atomic_path, atomic_write_json, atomic_write_text
from edgekd.capabilities import RUNTIME_SPECS
from edgekd.deploy.card import predict_runtimes, render_card

#: the standalone script copied into every deploy folder whose runtime it can run
PREDICT_SCRIPT = Path(__file__).with_name("predict.py")
#: the name the runtime's session module is copied under, beside ``predict.py`` (which imports it)
SESSION_SCRIPT = "edgekd_session.py"


def _session_source(runtime: str) -> Path:
    module = RUNTIME_SPECS[runtime].session
    assert module is not None, "predict_runtimes() lists runtimes with a session module only"
    found = importlib.util.find_spec(module)
    assert found is not None and found.origin is not None
    return Path(found.origin)

CARD_JSON = "model_card.json"
CARD_MD = "MODEL_CARD.md"


def write_deploy(dest: Path, model_files: list[Path], card: dict[str, Any]) -> list[Path]:
    """Replace ``dest`` with ``model_files`` (copied under their own names), the card and ``predict.py``.

    ``card`` is the JSON card of :func:`edgekd.deploy.card.build_card`; its ``files`` name the copies. Returns the
    paths written inside ``dest``.
    """
    names = [p.name for p in model_files]
    if [f["path"] for f in card["files"]] != names:
        raise ValueError(f"model card lists {[f['path'] for f in card['files']]}, copying {names}")
    runtime = card["artifact"]["runtime"]
    with_predict = runtime in predict_runtimes()
    written = [*names, CARD_JSON, CARD_MD] + (["predict.py", SESSION_SCRIPT] if with_predict else [])
    with atomic_dir(dest) as tmp:
        for source in model_files:
            with atomic_path(tmp / source.name) as part:
                shutil.copyfile(source, part)
        atomic_write_json(tmp / CARD_JSON, card)
        atomic_write_text(tmp / CARD_MD, render_card(card, with_predict=with_predict))
        if with_predict:
            with atomic_path(tmp / "predict.py") as part:
                shutil.copyfile(PREDICT_SCRIPT, part)
            with atomic_path(tmp / SESSION_SCRIPT) as part:
                shutil.copyfile(_session_source(runtime), part)
        for name in written:  # a folder to hand over: readable by all, the script executable
            (tmp / name).chmod(0o755 if name == "predict.py" else 0o644)
        tmp.chmod(0o755)
    return [dest / name for name in written]


def remove_deploy(dest: Path) -> None:
    """Remove a deploy folder left by an earlier selection (nothing is deployable now)."""
    if dest.exists():
        shutil.rmtree(dest)
