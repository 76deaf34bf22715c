"""Built-in optimizers.

A factory receives the model's parameters and the run's learning rate, plus its own
options (declared below with their defaults). The RunConfig keys `momentum` and
`weight_decay`, when set, are passed as those options, so `--set momentum=0.9` and
`--optimizer sgd:momentum=0.9` mean the same.

Defaults are PyTorch's, except `fused`: SGD, Adam, AdamW and Adagrad use their fused update
where torch has one for the device (`adam:fused=false` for the default implementation). Where Keras (which the original report used) differs, the help
line says so; to match Keras set the option, e.g. `adam:eps=1e-7`.
"""

from mnistres.registry import Option, optimizers


def _fused_if_possible(optimizer_class, params, fused, **settings):
    """The optimizer with its fused implementation (the whole update in one kernel) when `fused`
    and this torch has one for the parameters' device, else PyTorch's default implementation.

    The fused update is the same algorithm in one pass over the parameters; on the CPU it
    made training faster (docs/benchmarks/speed.md has the measurement).
    """
    params = list(params)
    if fused:
        try:
            return optimizer_class(params, fused=True, **settings)
        except (RuntimeError, TypeError, ValueError):  # no fused kernel for this device, dtype or torch version
            pass
    return optimizer_class(params, **settings)


_FUSED = {"fused": True}  # option of the optimizers that have a fused implementation


# What the options accept: beyond these, torch refuses them (late, with a traceback) or the update breaks
# (beta2 = 1 divides by zero in Adam's bias correction).
_FRACTION = dict(low=0.0, high=1.0)
_BETA = dict(low=0.0, high=1.0, high_open=True)
_NOT_NEGATIVE = dict(low=0.0)
_DECAY = Option(0.0, **_NOT_NEGATIVE)

_ADAM_LIKE = {"beta1": Option(0.9, **_BETA), "beta2": Option(0.999, **_BETA), "eps": Option(1e-8, **_NOT_NEGATIVE),
              "weight_decay": _DECAY}


@optimizers.register(
    "sgd",
    help="stochastic gradient descent; optional (Nesterov) momentum. Keras's default lr is 0.01",
    options={"momentum": Option(0.0, **_FRACTION), "nesterov": False, "dampening": Option(0.0, **_FRACTION),
             "weight_decay": _DECAY, **_FUSED},
)
def sgd(params, *, lr, momentum, nesterov, dampening, weight_decay, fused):
    import torch

    return _fused_if_possible(
        torch.optim.SGD, params, fused, lr=lr, momentum=momentum, nesterov=nesterov, dampening=dampening,
        weight_decay=weight_decay,
    )


@optimizers.register(
    "adam",
    help="Adam; the report's baseline. Keras uses eps=1e-7",
    options={**_ADAM_LIKE, "amsgrad": False, **_FUSED},
)
def adam(params, *, lr, beta1, beta2, eps, weight_decay, amsgrad, fused):
    import torch

    return _fused_if_possible(
        torch.optim.Adam, params, fused, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad
    )


@optimizers.register(
    "adamw",
    help="Adam with decoupled weight decay. Keras uses weight_decay=0.004, eps=1e-7",
    options={**_ADAM_LIKE, "weight_decay": Option(0.01, **_NOT_NEGATIVE), "amsgrad": False, **_FUSED},
)
def adamw(params, *, lr, beta1, beta2, eps, weight_decay, amsgrad, fused):
    import torch

    return _fused_if_possible(
        torch.optim.AdamW, params, fused, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad
    )


@optimizers.register(
    "rmsprop",
    help="RMSprop; one of the report's three. Keras uses rho (alpha)=0.9, eps=1e-7",
    options={"alpha": Option(0.99, **_FRACTION), "eps": Option(1e-8, **_NOT_NEGATIVE), "momentum": Option(0.0, **_FRACTION),
             "centered": False, "weight_decay": _DECAY},
)
def rmsprop(params, *, lr, alpha, eps, momentum, centered, weight_decay):
    import torch

    return torch.optim.RMSprop(
        params, lr=lr, alpha=alpha, eps=eps, momentum=momentum, centered=centered,
        weight_decay=weight_decay,
    )


@optimizers.register(
    "adagrad",
    help="Adagrad. Keras uses initial_accumulator_value=0.1, eps=1e-7",
    options={"lr_decay": Option(0.0, **_NOT_NEGATIVE), "initial_accumulator_value": Option(0.0, **_NOT_NEGATIVE),
             "eps": Option(1e-10, **_NOT_NEGATIVE), "weight_decay": _DECAY, **_FUSED},
)
def adagrad(params, *, lr, lr_decay, initial_accumulator_value, eps, weight_decay, fused):
    import torch

    return _fused_if_possible(
        torch.optim.Adagrad, params, fused, lr=lr, lr_decay=lr_decay, initial_accumulator_value=initial_accumulator_value,
        eps=eps, weight_decay=weight_decay,
    )


@optimizers.register(
    "adadelta",
    help="Adadelta; it is meant for lr near 1.0 (PyTorch's default). Keras uses rho=0.95, eps=1e-7",
    options={"rho": Option(0.9, **_FRACTION), "eps": Option(1e-6, **_NOT_NEGATIVE), "weight_decay": _DECAY},
)
def adadelta(params, *, lr, rho, eps, weight_decay):
    import torch

    return torch.optim.Adadelta(params, lr=lr, rho=rho, eps=eps, weight_decay=weight_decay)


@optimizers.register(
    "nadam",
    help="Adam with Nesterov momentum. Keras uses eps=1e-7",
    options={**_ADAM_LIKE, "momentum_decay": Option(0.004, **_NOT_NEGATIVE)},
)
def nadam(params, *, lr, beta1, beta2, eps, weight_decay, momentum_decay):
    import torch

    return torch.optim.NAdam(
        params, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay,
        momentum_decay=momentum_decay,
    )


@optimizers.register(
    "radam",
    help="Rectified Adam (variance warm-up built in). Keras has no RAdam",
    options=dict(_ADAM_LIKE),
)
def radam(params, *, lr, beta1, beta2, eps, weight_decay):
    import torch

    return torch.optim.RAdam(params, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay)
