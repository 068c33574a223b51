"""Configuration of the prepare stage (SPEC section 2)."""

from dataclasses import dataclass


@dataclass
class DataConfig:
    k_core: int = 5                  # iterative k-core on users and items
    max_history: int = 20            # most recent items kept in each history
    num_levels: int = 3              # category levels kept (one tag per RQ layer)
    num_time_buckets: int = 32       # log-scale buckets of the time since the previous item
    # item text of an item without metadata ({item_id} = its raw id); distinct per item so that
    # such items do not all share one content embedding
    missing_text: str = "Item {item_id}"
