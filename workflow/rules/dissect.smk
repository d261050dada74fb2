# Network Dissection: Broden fetched (or generated) once, then each cell's units named by concept.
DISSECT_DIR = f"{CELL_DIR}/dissect"

localrules:
    broden,


if DISSECT["broden"]["source"] != "folder":

    rule broden:
        output:
            directory(broden_root()),
        params:
            broden=DISSECT["broden"],
            downloads_dir=f"{DATA_ROOT}/downloads/broden",
            offline_dir=CFG["data"]["offline_dir"],
        log:
            "logs/broden.log",
        conda:
            "../envs/reglens.yaml"
        script:
            "../scripts/broden.py"


rule dissect:
    input:
        model=intact(f"{CELL_DIR}/model.pt"),
        broden=ancient(broden_root()),
    output:
        units=f"{DISSECT_DIR}/units.csv",
        summary=f"{DISSECT_DIR}/summary.json",
        top=f"{DISSECT_DIR}/top.pt",
    params:
        cfg={k: v for k, v in DISSECT.items() if k not in ("enabled", "broden")},
    log:
        "logs/dissect/{study}/{arch}/{reg}/seed{seed}.log",
    threads: config["torch_threads"]
    conda:
        "../envs/reglens.yaml"
    script:
        "../scripts/dissect.py"
