"""The codec in a tf.data service: workers that can run pipelines holding nnjpeg's op.

A `tf_compress` pipeline holds the codec as the TensorFlow op `NnjpegRoundTrip` (nnjpeg/_tf_op.so).
The tf.data service ships a pipeline's graph to its workers, so each worker process must have the
op registered before it runs one: `nnjpeg data-worker` is TensorFlow's worker with nnjpeg loaded.

    # one dispatcher (any process), then a worker per machine or core group:
    nnjpeg data-worker --dispatcher HOST:5050
    # the trainer:
    ds = ds.map(nnjpeg.tf_compress(table)).apply(tf.data.experimental.service.distribute(
        processing_mode=tf.data.experimental.service.ShardingPolicy.DYNAMIC, service="grpc://HOST:5050"))
"""

from __future__ import annotations

import time

__all__ = ["start_worker", "run_worker"]


def start_worker(dispatcher: str, *, port: int = 0, host: str = "localhost"):
    """Starts a tf.data service worker with nnjpeg's op registered.

    Args:
        dispatcher: the dispatcher's "HOST:PORT".
        port: the worker's port (0: any free one).
        host: the name the dispatcher and the trainers reach this worker by.

    Returns:
        The started `tf.data.experimental.service.WorkerServer`.

    Raises:
        ValueError: a dispatcher address that is not HOST:PORT, a bad port, or nnjpeg's op not
            loadable here (the worker could not run a pipeline holding it).
    """
    host_part, sep, port_part = dispatcher.rpartition(":")
    if not (sep and host_part and port_part.isdigit() and 0 < int(port_part) < 65536):
        raise ValueError(f"Expected the dispatcher as HOST:PORT, e.g. localhost:5050. Received: {dispatcher!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port < 65536:
        raise ValueError(f"Expected port to be an integer in 0...65535 (0: any free port). Received: {port!r}")
    import tensorflow as tf

    from . import tf_ops

    status = tf_ops.native_op_status()
    if status != "op":
        raise ValueError(f"Expected nnjpeg's TensorFlow op to load, so that this worker can run pipelines holding it. "
                         f"Received: {status}")
    config = tf.data.experimental.service.WorkerConfig(dispatcher_address=dispatcher, worker_address=f"{host}:%port%",
                                                       port=port)
    return tf.data.experimental.service.WorkerServer(config)


def run_worker(dispatcher: str, *, port: int = 0, host: str = "localhost", timeout: float | None = None) -> None:
    """`start_worker`, then serves until `timeout` seconds have passed (None: until the process is
    stopped), and stops."""
    if timeout is not None and not timeout > 0:
        raise ValueError(f"Expected timeout > 0 seconds, or None to serve until stopped. Received: {timeout!r}")
    worker = start_worker(dispatcher, port=port, host=host)
    print(f"nnjpeg data worker for {dispatcher}, serving" + (f" for {timeout:g} s" if timeout else ""), flush=True)
    if timeout is None:
        worker.join()
        return
    time.sleep(timeout)
    worker.stop()
