"""Unit types of a Restricted Boltzmann Machine, behind one small interface.

An RBM's energy splits into a self-energy of each layer and one bilinear interaction:

    E(v, h) = E_v(v) + E_h(h) - s_v(v)^T W s_h(h)

where ``s`` is a unit type's *scale* (the identity for binary units, ``v / sigma^2`` for
Gaussian units with variance ``sigma^2``, Cho, Ilin & Raiko 2011). A unit type therefore
needs to know only its own parameters and the *interaction input* ``x`` that the other
layer sends it (``x = s_v(v) @ W`` for the hidden layer, ``x = s_h(h) @ W.T`` for the
visible layer). Everything the RBM needs follows from a handful of functions of ``x``:

- ``mean(x)``: E[u | x], what a deterministic pass sends up or down;
- ``sample(x, gen)``: a draw of u | x using the run's explicit generator;
- ``stat(x)``: E[s(u) | x] = -d free_energy(x) / dx, the statistic paired with W in
  the gradient (equal to ``mean`` except for Gaussian units);
- ``energy(u)``: the self-energy E_u(u), shape (batch,);
- ``free_energy(x)``: -log sum_u exp(-E_u(u) + s(u) . x), shape (batch,), the
  contribution of this layer when it is summed (or integrated) out;
- ``grad_energy(u, back)`` and ``grad_free_energy(x)``: the gradients of those two
  terms with respect to the unit's own parameters, summed over the batch; the RBM
  combines them with the W statistics into the exact free-energy gradient.

A new unit type is one small subclass of ``Units`` with a new ``kind``; defining it
registers it, and the RBM never changes (STYLE.md, habit 1). Besides the maths above, each
type states the facts the rest of the library asks for (base.py): ``base_rate_bias``
(initial and AIS base-model biases), ``unit_values``/``enumerate_states`` (exact.py),
``activation`` and ``fold_scale`` (the unrolled net), ``check_data``, ``is_binary``,
``unit_interval``, ``standardized_data`` and ``roles`` (which recipe/estimator choices
offer it: ``kinds("hidden")``).

Modules: base.py (the interface, registry, random draws), binary.py (Bernoulli,
Softmax), real.py (Gaussian, SteppedSigmoid, NReLU), joint.py (Joint).
Shapes: ``x``, ``u`` are (batch, n); parameters are (n,).
"""

from deepbelief.units.base import ACTIVATIONS, UNIT_TYPES, Units, kinds, unit_type, units_from_config
from deepbelief.units.binary import Bernoulli, Softmax
from deepbelief.units.joint import Joint
from deepbelief.units.real import Gaussian, NReLU, SteppedSigmoid

__all__ = ["Units", "Bernoulli", "Softmax", "Gaussian", "SteppedSigmoid", "NReLU", "Joint", "UNIT_TYPES",
           "ACTIVATIONS", "kinds", "unit_type", "units_from_config"]
