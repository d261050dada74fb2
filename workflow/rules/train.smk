# One training job per cell; cells of the 2-D toy study also record their decision regions per epoch.


rule train:
    input:
        data=study_dataset_file,
    output:
        **analysis_outputs("train"),
    params:
        run=train_params,
    wildcard_constraints:
        study=one_of(IMAGE_STUDIES),
        arch=one_of(OWN_GPU_ARCHS),
    log:
        analysis_log("train"),
    threads: config["torch_threads"]
    retries: RESUMABLE_RETRIES
    resources:
        **slurm_resources("train"),
    conda:
        "../envs/reglens.yaml"
    script:
        "../scripts/train.py"


# Small architectures (config gpu_sharing.archs): the same job; on a SLURM site with GPU shards
# (config cluster.shards) each asks for one shard, so several train on one GPU at once.
use rule train as train_shared with:
    wildcard_constraints:
        study=one_of(IMAGE_STUDIES),
        arch=one_of(SHARED_ARCHS),
    resources:
        **slurm_resources("train_shared"),


use rule train as train_toy with:
    output:
        **analysis_outputs("train"),
        regions=analysis_file("train", "regions"),
    wildcard_constraints:
        study=one_of(POINT_STUDIES),
        arch=r"[a-z0-9_]+",
    resources:
        **slurm_resources("train_toy"),


rule train_all:
    input:
        train_targets(),
