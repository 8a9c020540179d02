"""The old torchvision ResNet-50 procedure, as RSB's comparison table reports it."""

from recipes._base import Recipe, Reference, register

BASELINE = register(
    Recipe(
        name="baseline",
        summary="torchvision's original ResNet-50 recipe: SGD, step LR, 90 epochs",
        reference=Reference(
            source="Wightman et al., ResNet strikes back (arXiv:2110.00476), comparison table; "
            "timm results-imagenet.csv measures these weights at 76.156 / 92.866",
            dataset="imagenet",
            top1=76.1,
            top5=92.866,
            note="top-5 is timm's measurement of the released torchvision weights, not the paper's; per-device "
            "batch 32 is torchvision's reference script (8 GPUs x --batch-size 32)",
            per_device_batch=32,
        ),
        model="resnet50",
        dataset="imagenet",
        img_size=224,
        test_img_size=224,
        crop_pct=0.875,
        interpolation="bilinear",
        scale=(0.08, 1.0),
        hflip=0.5,
        color_jitter=0.0,
        opt="momentum",
        lr=0.1,
        momentum=0.9,
        weight_decay=1e-4,
        filter_bias_and_bn=False,
        batch_size=256,
        sched="step",
        epochs=90,
        decay_epochs=30,
        decay_rate=0.1,
        warmup_epochs=0,
        min_lr=0.0,
        amp=False,
        proxy_epochs=15,
        notes=("weight decay applies to every parameter, as in torchvision's reference scripts of the time",),
    )
)
