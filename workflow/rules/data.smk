# Download (or stage) the official releases, verify them, convert each once into a tensor file;
# a planted-shortcut study's dataset is derived from its base dataset's file once.

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
        options=lambda wildcards: canonical(CFG["data"].get(wildcards.dataset, {})),  # the toy dataset's settings
    log:
        "logs/prepare_data/{dataset}.log",
    resources:
        **slurm_resources("prepare_data"),
    conda:
        "../envs/reglens.yaml"
    script:
        "../scripts/prepare_data.py"


rule plant_shortcut:
    input:
        lambda wildcards: ancient(checked(dataset_file(CFG["studies"][wildcards.study]["dataset"]))),
    output:
        f"{DATA_ROOT}/data/shortcut/{{study}}.pt",
    params:
        settings=lambda wildcards: canonical(CFG["studies"][wildcards.study]["shortcut"]),
    wildcard_constraints:
        study=one_of(SHORTCUT_STUDIES),
    log:
        "logs/plant_shortcut/{study}.log",
    resources:
        **slurm_resources("plant_shortcut"),
    conda:
        "../envs/reglens.yaml"
    script:
        "../scripts/plant_shortcut.py"
