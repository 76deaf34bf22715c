"""Built-in presets: named bundles of RunConfig values (`mnistres train --preset fast`).

A preset is the lowest layer above the defaults: a config file, options and --set pairs
all win over it, so `--preset fast --epochs 2` is the fast recipe run for two epochs.
An entry's options are its values, so `mnistres plugins` shows exactly what it sets, and
`--preset fast:lr=0.05` changes one of them. A plugin adds a preset the same way:

    @presets.register("tiny", help="...", options={"width": 16, "epochs": 2})
    def tiny(**values):
        return values
"""

from mnistres.registry import presets


def _values(**values):
    return values


presets.register(
    "fast",
    help="tuned for time to 99 % test accuracy: one pass over 44,000 of the training images, the first 80 % "
         "as 20x20 windows around the digit, 64 a step (docs/benchmarks/fast-preset.md)",
    options={"batch_size": 32, "epochs": 1, "train_size": 44000, "optimizer": "sgd:nesterov=true", "momentum": 0.9,
             "lr": 0.25, "schedule": "onecycle:div_factor=5", "label_smoothing": 0.2,
             "low_res": 20, "low_res_mode": "crop", "low_res_epochs": 0.8, "low_res_batch_size": 64},
)(_values)

presets.register(
    "best",
    help="the report's model trained for accuracy: 20 epochs of warped digits, weight average "
         "(docs/benchmarks/best-preset.md)",
    options={"batch_size": 128, "epochs": 20, "optimizer": "sgd:nesterov=true", "momentum": 0.9, "lr": 0.1,
             "weight_decay": 0.0005, "schedule": "onecycle", "label_smoothing": 0.1, "ema": 0.999,
             "rotate": 10.0, "zoom": 0.1, "translate": 2.0},
)(_values)
