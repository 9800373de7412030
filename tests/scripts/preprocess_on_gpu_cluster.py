"""Run preprocessing on a 2-node ray.cluster_utils.Cluster whose second node declares GPU: 1.

Usage: python -m tests.scripts.preprocess_on_gpu_cluster CSV OUT URL_TEMPLATE
Prints one JSON line: the GPU node's id, where each FeatureStage actor ran, and the summary.
"""

import json
import os
import sys

import ray
from ray.cluster_utils import Cluster
from ray.util.state import list_actors

from pipelines import preprocess


def main(csv: str, out: str, url_template: str) -> None:
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 3, "include_dashboard": True, "dashboard_host": "127.0.0.1", "dashboard_port": 0})  # fmt: skip
    try:
        gpu_node = cluster.add_node(num_cpus=1, num_gpus=1)  # a logical GPU: the hardware has none
        os.environ["RAY_ADDRESS"] = cluster.address
        ray.init(address=cluster.address)
        summary = preprocess.run(preprocess.PreprocessConfig(
            csv=csv, out=out, url_template=url_template, face_embedder="dlib", cpus_per_actor=0.5,
            gpu_actors=1, gpus_per_actor=1.0, batch_size=4))  # fmt: skip
        feature_nodes = [a.node_id for a in list_actors(detail=True, limit=1000) if "FeatureStage" in a.class_name]
        cpu_only_nodes = [n["NodeID"] for n in ray.nodes() if not n["Resources"].get("GPU")]
        print(json.dumps({"gpu_node": gpu_node.node_id, "cpu_only_nodes": cpu_only_nodes,
                          "feature_nodes": feature_nodes, "summary": summary}))  # fmt: skip
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:])
