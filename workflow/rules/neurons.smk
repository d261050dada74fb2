# Attribution maps of the units activation maximization draws, to the input pixels (reglens.neurons).
rule neurons:
    input:
        model=intact(analysis_file("train", "model")),
        data=study_dataset_file,
    output:
        **analysis_outputs("neurons"),
    params:
        cfg=canonical({key: value for key, value in CFG["neurons"].items() if key != "enabled"}),
        units=canonical({key: CFG["actmax"][key] for key in ("units", "units_per_layer")}),
    log:
        analysis_log("neurons"),
    threads: config["torch_threads"]
    resources:
        **slurm_resources("neurons", packed=True),
    conda:
        "../envs/reglens.yaml"
    script:
        "../scripts/neurons.py"
