"""The codec in a tf.data service: a dispatcher and two `nnjpeg data-worker` processes give the same
elements as a local map. They run in a network namespace of their own (`unshare -rn`), whose only
interface is its loopback, so nothing they listen on is reachable from elsewhere."""

import json

import pytest

import namespace

pytest.importorskip("tensorflow")

SCRIPT = """
import json, subprocess, sys
import numpy as np
import tensorflow as tf
import nnjpeg
from nnjpeg import tf_ops

service = tf.data.experimental.service
dispatcher = service.DispatchServer(service.DispatcherConfig(port=0))
address = dispatcher.target.split("://", 1)[1]
workers = [subprocess.Popen([sys.executable, "-m", "nnjpeg", "data-worker", "--dispatcher", address, "--timeout", "240"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
try:
    images = np.random.default_rng(0).integers(0, 256, (24, 16, 24, 3), dtype=np.uint8)
    pipeline = tf.data.Dataset.from_tensor_slices((images, np.arange(24))).map(nnjpeg.tf_compress(nnjpeg.nn_table(5)))
    local = {int(i): x.numpy() for x, i in pipeline}
    remote = pipeline.apply(service.distribute(processing_mode=service.ShardingPolicy.DYNAMIC, service=dispatcher.target,
                                               job_name="nnjpeg-test"))
    got = [(int(i), x.numpy()) for x, i in remote]
    print(json.dumps({
        "op": tf_ops.native_op_status(),
        "indices": sorted(i for i, _ in got),
        "equal_local": all(np.array_equal(x, local[i]) for i, x in got),
        "equal_codec": all(np.array_equal(x, nnjpeg.compress(images[i], nnjpeg.nn_table(5))) for i, x in got),
        "workers_running": [w.poll() is None for w in workers],
    }))
finally:
    for w in workers:
        w.kill()
        w.communicate(timeout=30)
"""


def test_two_workers_give_the_elements_of_a_local_map(tmp_path):
    if not namespace.available():
        pytest.skip(namespace.SKIP_REASON)
    # The script and the workers it starts run in the namespace, and are killed with it.
    env = {"PATH": "/usr/sbin:/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "2", "HOME": str(tmp_path)}
    proc = namespace.run_python(SCRIPT, [], cwd=tmp_path, env=env, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["op"] == "op"  # the pipeline holds the native op, which only a worker with nnjpeg can run
    assert out["indices"] == list(range(24))  # every element once
    assert out["equal_local"] and out["equal_codec"]
    assert out["workers_running"] == [True, True]


def test_data_worker_refuses_a_bad_dispatcher(capsys):
    from nnjpeg.cli import main

    assert main(["data-worker", "--dispatcher", "nohost"]) == 2
    assert "Expected the dispatcher as HOST:PORT, e.g. localhost:5050. Received: 'nohost'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["data-worker", "--dispatcher", "localhost:5050", "--timeout", "0"])
    assert "argument --timeout: expected a finite number > 0. Received: '0'" in capsys.readouterr().err
