"""The lecture's claims as experiments: each is one function, one command, one report.

- ``lecture14``: the MNIST table of Hinton's lecture 14 ("Learning layers of features
  by stacking RBMs"): backprop from random initialisation, pre-training + backprop,
  pre-training + dropout backprop (Srivastava et al. 2014, table 2), and the generative
  DBN after up-down fine-tuning (Hinton, Osindero & Teh 2006; not run by this command,
  since ``benchmarks/mnist_hot2006.py`` trains that model: "not run", with a recorded
  run's figure beside it when ``--results`` names a folder of benchmark JSONs), each
  beside the published number, with wall times.
- ``erhan``: does pre-training help, and why? (Erhan et al. 2009, 2010): networks of
  depth 1..4 with and without pre-training over several seeds; test error mean and
  spread per depth, a histogram, and the function-space trajectories (each network's
  outputs on a fixed test subset after each epoch, embedded in 2-D with t-SNE).
- ``posterior``: on tiny models where everything is enumerable (``deepbelief.exact``),
  the aggregated posterior of a trained RBM is not factorial, and stacking a second and
  third RBM raises the variational bound on log p(v) (Hinton, Osindero & Teh 2006).

Each writes a markdown report and PNG figures to ``./deepbelief-results/<experiment>/``
(``--output-dir``; benchmarks/ pass ``--docs-dir docs`` to update ``docs/results/``) and, with ``out``, a
JSON of every measured figure plus machine information. Sizes: ``quick`` (minutes on a
2-core CPU, a subset of MNIST), ``reduced`` (erhan: under 30 minutes on that CPU) and
``full`` (sized for about a minute of an H100; see docs/6-experiments.md).
"""

from deepbelief.experiments.common import ERHAN_PUBLISHED, PUBLISHED, _from_dict, machine_info, mnist_subset
from deepbelief.experiments.erhan import ErhanConfig, erhan, erhan_figures, erhan_markdown
from deepbelief.experiments.lecture14 import (
    LECTURE14_ROWS,
    Lecture14Config,
    _subset_dataset,
    lecture14,
    lecture14_figure,
    lecture14_markdown,
    read_recorded_updown,
)
from deepbelief.experiments.posterior import (
    PosteriorConfig,
    posterior_example,
    posterior_markdown,
    variational_bound_exact,
)
from deepbelief.experiments.runner import _output_folder, main_from_args, parse_sets

__all__ = [
    "ERHAN_PUBLISHED", "PUBLISHED", "machine_info", "mnist_subset",
    "ErhanConfig", "erhan", "erhan_figures", "erhan_markdown",
    "LECTURE14_ROWS", "Lecture14Config", "lecture14", "lecture14_figure", "lecture14_markdown", "read_recorded_updown",
    "PosteriorConfig", "posterior_example", "posterior_markdown", "variational_bound_exact",
    "main_from_args", "parse_sets", "_from_dict", "_output_folder", "_subset_dataset",
]
