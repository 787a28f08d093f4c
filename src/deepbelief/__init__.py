"""deepbelief: Restricted Boltzmann Machines and Deep Belief Networks.

The public API, bottom up:

- ``units``: ``Bernoulli``, ``Gaussian``, ``NReLU``, ``SteppedSigmoid``, ``Softmax``, ``Joint``
- ``RBM``: energies, free energies, conditionals, Gibbs sampling, exact gradients
- ``train_rbm`` / ``RBMTrainConfig`` / ``pretrain_stack``: CD-k, PCD and parallel-tempering
  training (``method="pt"``), centred updates (``centering=True``), greedy stacking;
  ``pt_sample``: samples from a trained RBM by parallel tempering
- ``DBN``: the stack; ``unroll`` / ``finetune``: discriminative fine-tuning
- ``GenerativeDBN`` / ``pretrain_generative`` / ``up_down``: labels in the top RBM,
  free-energy classification, generation, contrastive wake-sleep (HOT 2006)
- ``save_model`` / ``load_model``: safetensors + JSON, atomic, never pickle
- ``ais_log_partition`` / ``rbm_log_likelihood`` / ``dbn_lower_bound``: AIS, log p(v), the DBN bound
"""

__version__ = "0.1.0"

from deepbelief.dbn import DBN, GenerativeDBN

from deepbelief.ais import ais_log_partition, rbm_log_likelihood
from deepbelief.bound import dbn_lower_bound
from deepbelief.errors import ConfigError, DataError, DeepBeliefError, DivergenceError, ModelFileError
from deepbelief.finetune import DeepClassifier, FinetuneConfig, finetune, unroll
from deepbelief.io import load_model, save_model
from deepbelief.rbm import RBM
from deepbelief.sampling import pt_sample
from deepbelief.stacking import pretrain_generative, pretrain_stack
from deepbelief.training import RBMTrainConfig, make_generator, train_rbm
from deepbelief.units import Bernoulli, Gaussian, Joint, NReLU, Softmax, SteppedSigmoid
from deepbelief.wake_sleep import UpDownConfig, up_down

__all__ = [
    "__version__", "RBM", "DBN", "Bernoulli", "Gaussian", "Joint", "NReLU", "Softmax", "SteppedSigmoid",
    "RBMTrainConfig", "train_rbm", "pretrain_stack", "make_generator", "pt_sample", "DeepClassifier", "FinetuneConfig",
    "finetune", "unroll", "save_model", "load_model", "DeepBeliefError", "ConfigError", "DataError",
    "ModelFileError", "DivergenceError",
    "GenerativeDBN", "pretrain_generative", "UpDownConfig", "up_down",

    "ais_log_partition", "rbm_log_likelihood", "dbn_lower_bound",
]
