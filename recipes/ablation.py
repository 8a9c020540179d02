"""Steps of the ablation ladder from the torchvision baseline towards RSB.

No verified published figure exists for these steps alone, so they carry no reported value;
the report shows them as measured deltas against `baseline`.
"""

import dataclasses

from recipes._base import Reference, register
from recipes.baseline import BASELINE

_NO_FIGURE = "no verified published figure for this step; compared as a delta against baseline"

COSINE = register(
    dataclasses.replace(
        BASELINE,
        name="cosine",
        summary="baseline with cosine LR decay and 5 linear warmup epochs",
        reference=Reference(source="ablation step (this harness)", dataset="imagenet", note=_NO_FIGURE),
        sched="cosine",
        warmup_epochs=5,
        warmup_lr=1e-5,
        min_lr=0.0,
        notes=("warmup length and start LR are this harness's choice, not a published setting",),
    )
)

MIXUP_CUTMIX = register(
    dataclasses.replace(
        COSINE,
        name="mixup_cutmix",
        summary="cosine plus Mixup (alpha 0.2) and CutMix (alpha 1.0), soft-target cross-entropy",
        reference=Reference(source="ablation step (this harness)", dataset="imagenet", note=_NO_FIGURE),
        mixup=0.2,
        cutmix=1.0,
        mixup_prob=1.0,
        mixup_switch_prob=0.5,
        notes=(
            "alphas follow torchvision's later recipe (mixup 0.2, cutmix 1.0); "
            "one of the two is applied per batch with probability 0.5 each",
        ),
    )
)
