"""Built-in activations. Each factory returns a fresh `nn.Module` every time it is called,
so an activation with parameters (or state) is never shared between layers.

torch is imported inside the factories: listing entries must not cost a torch import.
"""

from mnistres.registry import Option, activations


@activations.register("relu", help="max(0, x); the report's baseline")
def relu():
    from torch import nn

    return nn.ReLU()


@activations.register(
    "leaky_relu",
    help="x if x > 0 else slope * x (Keras's LeakyReLU defaults to slope 0.3)",
    options={"negative_slope": Option(0.01, low=-1.0, high=1.0)},
)
def leaky_relu(negative_slope: float):
    from torch import nn

    return nn.LeakyReLU(negative_slope)


@activations.register("elu", help="x if x > 0 else alpha * (exp(x) - 1)", options={"alpha": Option(1.0, low=0.0)})
def elu(alpha: float):
    from torch import nn

    return nn.ELU(alpha)


@activations.register(
    "gelu",
    help="x * Phi(x); approximate='tanh' uses the tanh formula",
    options={"approximate": Option("none", choices=("none", "tanh"))},
)
def gelu(approximate: str):
    from torch import nn

    return nn.GELU(approximate=approximate)


@activations.register("silu", help="x * sigmoid(x) (also called swish)")
def silu():
    from torch import nn

    return nn.SiLU()


@activations.register("mish", help="x * tanh(softplus(x))")
def mish():
    from torch import nn

    return nn.Mish()


@activations.register("sigmoid", help="1 / (1 + exp(-x)); one of the report's three")
def sigmoid():
    from torch import nn

    return nn.Sigmoid()


@activations.register("tanh", help="hyperbolic tangent; one of the report's three")
def tanh():
    from torch import nn

    return nn.Tanh()
