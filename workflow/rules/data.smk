# Download (or stage) the official releases, verify them, convert each once into a tensor file.

localrules:
    download,


rule download:
    output:
        f"{DATA_ROOT}/downloads/{{dataset}}.verified.json",
    params:
        downloads_dir=f"{DATA_ROOT}/downloads/{{dataset}}",
        offline_dir=CFG["data"]["offline_dir"],
    log:
        "logs/download/{dataset}.log",
    conda:
        "../envs/reglens.yaml"
    script:
        "../scripts/download.py"


rule prepare_data:
    input:
        raw_flag,
    output:
        f"{DATA_ROOT}/data/{{dataset}}.pt",
    params:
        downloads_dir=f"{DATA_ROOT}/downloads/{{dataset}}",
        options=lambda wildcards: CFG["data"].get(wildcards.dataset, {}),  # the toy dataset's settings
    log:
        "logs/prepare_data/{dataset}.log",
    conda:
        "../envs/reglens.yaml"
    script:
        "../scripts/prepare_data.py"
