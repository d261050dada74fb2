# Network Dissection: Broden fetched (or generated) once, then each cell's units named by concept;
# beyond single units, Net2Vec concept embeddings and lesions on every dissected cell.
DISSECT_DIR = f"{CELL_DIR}/dissect"

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
    conda:
        "../envs/reglens.yaml"
    script:
        "../scripts/decode_broden.py"


rule dissect:
    input:
        model=intact(f"{CELL_DIR}/model.pt"),
        broden=ancient(broden_root()),
        decoded=rules.decode_broden.output[0],
    output:
        units=f"{DISSECT_DIR}/units.csv",
        summary=f"{DISSECT_DIR}/summary.json",
        top=f"{DISSECT_DIR}/top.pt",
    params:
        cfg=canonical({k: v for k, v in DISSECT.items() if k not in ("enabled", "broden")}),
    log:
        "logs/dissect/{study}/{arch}/{reg}/seed{seed}.log",
    threads: config["torch_threads"]
    conda:
        "../envs/reglens.yaml"
    script:
        "../scripts/dissect.py"


rule net2vec:
    input:
        model=intact(f"{CELL_DIR}/model.pt"),
        broden=ancient(broden_root()),
        decoded=rules.decode_broden.output[0],
        units=intact(f"{DISSECT_DIR}/units.csv"),
    output:
        f"{CELL_DIR}/concepts/net2vec.csv",
    params:
        dissect=canonical({k: v for k, v in DISSECT.items() if k not in ("enabled", "broden")}),
        cfg=canonical({k: v for k, v in CFG["net2vec"].items() if k != "enabled"}),
    log:
        "logs/net2vec/{study}/{arch}/{reg}/seed{seed}.log",
    threads: config["torch_threads"]
    conda:
        "../envs/reglens.yaml"
    script:
        "../scripts/net2vec.py"


rule lesion:
    input:
        model=intact(f"{CELL_DIR}/model.pt"),
        data=study_dataset_file,
    output:
        curves=f"{CELL_DIR}/lesion/curves.csv",
        summary=f"{CELL_DIR}/lesion/summary.json",
    params:
        cfg=canonical({k: v for k, v in CFG["lesion"].items() if k != "enabled"}),
    log:
        "logs/lesion/{study}/{arch}/{reg}/seed{seed}.log",
    threads: config["torch_threads"]
    conda:
        "../envs/reglens.yaml"
    script:
        "../scripts/lesion.py"
