"""What every figure of the report shares: the result type, an Agg canvas, the seaborn style, the methods'
colours and the metrics' axis labels (figures.py and the figure modules beside it build on these)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from clipvqd.evaluation.table import ALLOWED_METHODS

METRIC_LABELS = {
    "fid": "FID ↓", "kid": "KID ↓", "precision": "precision ↑", "recall": "recall ↑",
    "clipscore_best16": "CLIPscore best-of-16 ↑", "clipscore_mean": "CLIPscore mean ↑",
    "clipscore_judge_mean": "judge CLIPscore mean ↑", "attr_acc": "attribute accuracy ↑",
    "attr_acc_ood": "attribute accuracy, held-out combos ↑", "cmmd": "CMMD ↓",
    "within_prompt_diversity": "within-prompt diversity (judge feat.)",  # no arrow: higher is not better by itself
}
METHOD_PALETTE = dict(zip(ALLOWED_METHODS, ("#1b6ca8", "#d1495b", "#edae49", "#00798c", "#6c757d")))


@dataclass
class FigureResult:
    key: str
    title: str
    path: str | None = None  # relative to the report folder, '/'-separated
    note: str | None = None  # why the figure is missing, or a caveat shown under it

    @property
    def drawn(self) -> bool:
        return self.path is not None


def new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Figure, out_dir: Path, name: str) -> str:
    relative = Path("figures") / f"{name}.png"
    (Path(out_dir) / relative).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(Path(out_dir) / relative, format="png", metadata={"Software": None})
    return relative.as_posix()


def styled():
    import seaborn as sns

    return sns, sns.axes_style("whitegrid")
