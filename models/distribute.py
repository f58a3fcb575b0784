"""What a custom `train_step` needs to train the same under `tf.distribute` as on one device.

Under a strategy with N replicas in sync (`tf.distribute.MirroredStrategy` over N devices,
`MultiWorkerMirroredStrategy` over a cluster), Keras runs `train_step` once per replica on 1/N of the
global batch, and the optimizer sums the replicas' gradients. A loss averaged over the replica's
slice must then be divided by N, as Keras' own `Model.compute_loss` does (`keras.losses.Loss`
reductions scale for distribution), for the update to be that of the mean over the global batch;
and a statistic that decides a state update (a VQ codebook's usage) must be reduced over the
replicas, so that every replica makes the same update and the mirrored copies stay identical.

Outside a strategy, or with one replica, every function a step calls here returns its input
unchanged: one-device training is bit for bit what it was without them.

Across machines, `multi_worker_strategy` is the strategy Keras' `Model.fit` runs under, and
`worker_folder` names where a worker other than the chief writes its files.
"""

from __future__ import annotations

__all__ = ["gather_rows_across_replicas", "multi_worker_strategy", "on_first_replica", "replicas_in_sync", "scale_loss",
           "sum_over_replicas", "worker_folder"]


def _replica_context():
    """The replica context of a step run on more than one replica, else None."""
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    return context if context is not None and context.num_replicas_in_sync > 1 else None


def replicas_in_sync() -> int:
    """N, the replicas of the current `tf.distribute` strategy (1 outside any)."""
    import tensorflow as tf

    return tf.distribute.get_strategy().num_replicas_in_sync


def scale_loss(loss):
    """The loss to take the gradient of: a per-replica mean `loss` divided by the N replicas in sync
    (itself outside a replica context of more than one replica). Track the unscaled `loss` in the
    metrics: a `keras.metrics.Mean` averages the replicas' values.

    Shape:
        loss: () float tensor, the mean over this replica's slice of the batch; returns the same.
    """
    context = _replica_context()
    # The optimizer sums the N replicas' gradients: mean / N makes that sum the global batch mean's gradient.
    return loss if context is None else loss / context.num_replicas_in_sync


def sum_over_replicas(value):
    """`value` summed over the replicas in sync (all-reduce), the same on every replica; itself
    outside a replica context of more than one replica.

    Shape:
        value: a tensor of the same shape and dtype on every replica; returns the same.
    """
    import tensorflow as tf

    context = _replica_context()
    return value if context is None else context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def on_first_replica(value):
    """`value` on the first replica and zeros on the others: what every replica adds to a metric that
    sums over replicas (`keras.metrics.Sum`) when they all hold the same value, so that it is counted
    once. Itself outside a replica context of more than one replica."""
    import tensorflow as tf

    context = _replica_context()
    if context is None:
        return value
    return tf.where(tf.equal(context.replica_id_in_sync_group, 0), value, tf.zeros_like(value))


def gather_rows_across_replicas(rows, indices):
    """Rows `indices` of the replicas' `rows` stacked in replica order (the first replica's rows
    first: for a batch split by `tf.distribute`, the global batch's order), the same on every
    replica. Outside a replica context of more than one replica, `tf.gather(rows, indices)`.

    Only the picked rows cross between replicas: each replica contributes the rows it holds and
    zeros for the others, and an all-reduce sums them (x + 0 = x: the rows arrive exactly).

    Shape:
        rows: (M_r, D) on replica r, M_r rows; indices: (K,) int32 in [0, sum_r M_r); returns (K, D).
    """
    import tensorflow as tf

    context = _replica_context()
    if context is None:
        return tf.gather(rows, indices)
    count = tf.shape(rows)[0]
    counts = context.all_gather(count[None], axis=0)  # (N,): every replica's rows
    local = indices - tf.reduce_sum(counts[: context.replica_id_in_sync_group])
    # A zero row after this replica's rows stands for every row another replica holds.
    padded = tf.concat([rows, tf.zeros((1, tf.shape(rows)[1]), rows.dtype)], axis=0)
    picked = tf.gather(padded, tf.where((local >= 0) & (local < count), local, count))
    return context.all_reduce(tf.distribute.ReduceOp.SUM, picked)


def multi_worker_strategy():
    """A `tf.distribute.MultiWorkerMirroredStrategy` over the cluster that the TF_CONFIG environment
    variable describes, whose `reduce` also takes the two values Keras 3's `Model.fit` and
    `Model.evaluate` give it under more than one worker, which TensorFlow's own refuses: a nest of
    distributed values (the first batch, whose shapes build the model) is reduced leaf by leaf, and a
    scalar with `axis=0` (a replica's loss or metric in the step's logs) across the replicas alone,
    as with `axis=None` (TensorFlow issue #72388). Any other value is reduced as TensorFlow does.
    Make it once per process, before any other TensorFlow work."""
    import tensorflow as tf

    class MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
        def reduce(self, reduce_op, value, axis=None):
            reduce = super().reduce

            def leaf(v):
                local = self.experimental_local_results(v)[0]
                scalar = getattr(local, "shape", None) is not None and local.shape.rank == 0
                return reduce(reduce_op, v, None if scalar else axis)

            return tf.nest.map_structure(leaf, value)

    return MultiWorkerMirroredStrategy()


def worker_folder(strategy) -> str | None:
    """The folder, within a run's own, of this worker of a multi-worker `strategy` when it is not the
    chief: "<task type>-<index>" (e.g. "worker-1"). None on the chief (the chief task, else worker 0),
    whose files are the run's, and under any strategy of one machine.

    Every worker runs the whole training, saves included (a save may read variables, the metrics'
    on-read ones, through collective ops that every worker must join), and writes the same files at
    the same moments (checkpoints, logs, the final model): in one folder, on a shared filesystem, they
    would overwrite each other's."""
    if strategy.extended.should_checkpoint:
        return None
    resolver = strategy.cluster_resolver
    return f"{resolver.task_type}-{resolver.task_id}"
