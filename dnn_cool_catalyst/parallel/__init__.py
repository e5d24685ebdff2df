"""Scale-out: DataParallel memory balancing, distributed sampling/reduction/gathering, mixed precision."""
from .distributed import all_reduce_max, all_reduce_sum, gather_samples, is_rank_zero, world, world_size
from .precision import at_least_float32, autocast, autocast_dtype
from .replicas import REDUCTION_KEY, BatchReduction, balanced_forward, combine_replicas, replica_reduction
from .sampler import (BatchedSubset, PaddingMarkedSubset, ShardedBatchSampler, collate_batch, epoch_permutation,
                      reshard_loader, to_device)

__all__ = ["all_reduce_max", "all_reduce_sum", "gather_samples", "is_rank_zero", "world", "world_size",
           "at_least_float32", "autocast", "autocast_dtype", "REDUCTION_KEY", "BatchReduction", "balanced_forward",
           "combine_replicas", "replica_reduction", "PaddingMarkedSubset", "BatchedSubset", "ShardedBatchSampler",
           "collate_batch", "epoch_permutation", "reshard_loader", "to_device"]
