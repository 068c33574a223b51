import numpy as np
import torch

from prismrec.baselines.popularity import MostPopular
from prismrec.recommender.base import Batch


def test_same_top_k_for_every_user_by_training_count():
    model = MostPopular(np.array([3, 9, 0, 9, 5]))
    batch = Batch(torch.tensor([[0, 1], [-1, 2]]), torch.zeros(2, 2, dtype=torch.long), torch.tensor([2, 1]),
                  torch.tensor([1, 2]))
    items, scores = model.rank(batch, 3)
    assert items.tolist() == [[1, 3, 4], [1, 3, 4]]  # ties keep item order
    assert scores[0].tolist() == [9.0, 9.0, 5.0]
    items, _ = model.rank(batch, 7)  # more than the catalog: padded with -1
    assert items[0].tolist() == [1, 3, 4, 0, 2, -1, -1]
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 0
