"""Built-in optimizers.

A factory receives the model's parameters and the run's learning rate, plus its own
options (declared below with their defaults). The RunConfig keys `momentum` and
`weight_decay`, when set, are passed as those options, so `--set momentum=0.9` and
`--optimizer sgd:momentum=0.9` mean the same.

Defaults are PyTorch's. Where Keras (which the original report used) differs, the help
line says so; to match Keras set the option, e.g. `adam:eps=1e-7`.
"""

from mnistres.registry import optimizers

_ADAM_LIKE = {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0}


@optimizers.register(
    "sgd",
    help="stochastic gradient descent; optional (Nesterov) momentum. Keras's default lr is 0.01",
    options={"momentum": 0.0, "nesterov": False, "dampening": 0.0, "weight_decay": 0.0},
)
def sgd(params, *, lr, momentum, nesterov, dampening, weight_decay):
    import torch

    return torch.optim.SGD(
        params, lr=lr, momentum=momentum, nesterov=nesterov, dampening=dampening,
        weight_decay=weight_decay,
    )


@optimizers.register(
    "adam",
    help="Adam; the report's baseline. Keras uses eps=1e-7",
    options={**_ADAM_LIKE, "amsgrad": False},
)
def adam(params, *, lr, beta1, beta2, eps, weight_decay, amsgrad):
    import torch

    return torch.optim.Adam(
        params, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad
    )


@optimizers.register(
    "adamw",
    help="Adam with decoupled weight decay. Keras uses weight_decay=0.004, eps=1e-7",
    options={**_ADAM_LIKE, "weight_decay": 0.01, "amsgrad": False},
)
def adamw(params, *, lr, beta1, beta2, eps, weight_decay, amsgrad):
    import torch

    return torch.optim.AdamW(
        params, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad
    )


@optimizers.register(
    "rmsprop",
    help="RMSprop; one of the report's three. Keras uses rho (alpha)=0.9, eps=1e-7",
    options={"alpha": 0.99, "eps": 1e-8, "momentum": 0.0, "centered": False, "weight_decay": 0.0},
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
    options={"lr_decay": 0.0, "initial_accumulator_value": 0.0, "eps": 1e-10, "weight_decay": 0.0},
)
def adagrad(params, *, lr, lr_decay, initial_accumulator_value, eps, weight_decay):
    import torch

    return torch.optim.Adagrad(
        params, lr=lr, lr_decay=lr_decay, initial_accumulator_value=initial_accumulator_value,
        eps=eps, weight_decay=weight_decay,
    )


@optimizers.register(
    "adadelta",
    help="Adadelta; it is meant for lr near 1.0 (PyTorch's default). Keras uses rho=0.95, eps=1e-7",
    options={"rho": 0.9, "eps": 1e-6, "weight_decay": 0.0},
)
def adadelta(params, *, lr, rho, eps, weight_decay):
    import torch

    return torch.optim.Adadelta(params, lr=lr, rho=rho, eps=eps, weight_decay=weight_decay)


@optimizers.register(
    "nadam",
    help="Adam with Nesterov momentum. Keras uses eps=1e-7",
    options={**_ADAM_LIKE, "momentum_decay": 0.004},
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
