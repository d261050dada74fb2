# Network Dissection: Broden fetched (or generated) once, then each cell's units named by concept;
# beyond single units, Net2Vec concept embeddings and lesions on every dissected cell.
localrules:
    broden,


if DISSECT["broden"]["source"] != "folder":

    rule broden:
        output:
            directory(broden_root()),
        params:
            broden=canonical(DISSECT["broden"]),
            downloads_dir=f"{DATA_ROOT}/downloads/broden",
            offline_dir=CFG["data"]["offline_dir"],
        log:
            "logs/broden.log",
        conda:
            "../envs/reglens.yaml"
        script:
            "../scripts/broden.py"


# Broden's images (at the dissection input size, in each dissected dataset's channels) and masks,
# decoded once into memory-mappable arrays that every cell's dissection and Net2Vec read.
rule decode_broden:
    input:
        ancient(broden_root()),
    output:
        directory(f"{DATA_ROOT}/broden_decoded"),
    params:
        view=canonical({k: DISSECT[k] for k in ("categories", "conventions")}),
        sizes=canonical(broden_sizes()),
    log:
        "logs/decode_broden.log",
    threads: 4
    resources:
        **slurm_resources("decode_broden"),
    conda:
        "../envs/reglens.yaml"
    script:
        "../scripts/decode_broden.py"


rule dissect:
    input:
        model=intact(analysis_file("train", "model")),
        broden=ancient(broden_root()),
        decoded=rules.decode_broden.output[0],
    output:
        **analysis_outputs("dissect"),
    params:
        cfg=canonical({k: v for k, v in DISSECT.items() if k not in ("enabled", "broden")}),
    log:
        analysis_log("dissect"),
    threads: config["torch_threads"]
    resources:
        **slurm_resources("dissect", packed=True),
    conda:
        "../envs/reglens.yaml"
    script:
        "../scripts/dissect.py"


rule net2vec:
    input:
        model=intact(analysis_file("train", "model")),
        broden=ancient(broden_root()),
        decoded=rules.decode_broden.output[0],
        units=intact(analysis_file("dissect", "units")),
    output:
        **analysis_outputs("net2vec"),
    params:
        dissect=canonical({k: v for k, v in DISSECT.items() if k not in ("enabled", "broden")}),
        cfg=canonical({k: v for k, v in CFG["net2vec"].items() if k != "enabled"}),
    log:
        analysis_log("net2vec"),
    threads: config["torch_threads"]
    resources:
        **slurm_resources("net2vec", packed=True),
    conda:
        "../envs/reglens.yaml"
    script:
        "../scripts/net2vec.py"


rule lesion:
    input:
        model=intact(analysis_file("train", "model")),
        data=study_dataset_file,
    output:
        **analysis_outputs("lesion"),
    params:
        cfg=canonical({k: v for k, v in CFG["lesion"].items() if k != "enabled"}),
    log:
        analysis_log("lesion"),
    threads: config["torch_threads"]
    resources:
        **slurm_resources("lesion", packed=True),
    conda:
        "../envs/reglens.yaml"
    script:
        "../scripts/lesion.py"
